package rtcp

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rtcp/internal/punch"
)

// dpControl prepares the socket of a connection to the DP for a side
// that punches: punch.Control, then a bind to port 0 of any address, so
// that the port the connection gets is bound the way a punch binds it. A
// port that connect(2) picks on its own is not in the table of bound
// ports as one shared with SO_REUSEPORT, and the punch's bind of it can
// fail with EADDRINUSE.
func dpControl(network, address string, c syscall.RawConn) error {
	if err := punch.Control(network, address, c); err != nil {
		return err
	}
	var err error
	cerr := c.Control(func(fd uintptr) {
		var sa unix.Sockaddr = &unix.SockaddrInet4{}
		if network == "tcp6" {
			sa = &unix.SockaddrInet6{}
		}
		err = unix.Bind(int(fd), sa)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// setUserTimeout sets TCP_USER_TIMEOUT: data left unacknowledged for d
// fails the connection with ETIMEDOUT, and so do keepalive probes left
// unanswered that long.
func setUserTimeout(tc *net.TCPConn, d time.Duration) error {
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
