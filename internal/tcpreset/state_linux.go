package tcpreset

import "golang.org/x/sys/unix"

// tcpClose is TCP_CLOSE, the state a socket is left in by a reset.
const tcpClose = 7

// closedState reports whether the socket fd is in state CLOSE.
// unix.GetsockoptTCPInfo rather than a raw getsockopt system call: linux/386
// has no SYS_GETSOCKOPT (it multiplexes socket calls through socketcall).
func closedState(fd uintptr) bool {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == tcpClose
}
