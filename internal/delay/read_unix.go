//go:build unix

package delay

import (
	"io"
	"net"
	"os"
	"syscall"
)

// A rawReader reads a TCP connection through its descriptor, taking a
// buffer only once there is something to read: an idle connection holds
// none.
type rawReader interface {
	read(get func() *[]byte, put func(*[]byte)) (*[]byte, int, error)
}

type rawConn struct{ rc syscall.RawConn }

func newRawReader(c net.Conn) rawReader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rawConn{rc}
}

// read returns the buffer (nil if no bytes came, then given back) and the
// number of bytes read, or io.EOF at the end. Close interrupts it.
func (r rawConn) read(get func() *[]byte, put func(*[]byte)) (*[]byte, int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		bp = get()
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			put(bp) // wait without it
			bp = nil
			return false
		}
		return true
	})
	switch {
	case err != nil:
		rerr = err
	case rerr != nil:
		rerr = os.NewSyscallError("read", rerr)
	case n == 0:
		rerr = io.EOF
	}
	if n <= 0 {
		n = 0
		if bp != nil {
			put(bp)
			bp = nil
		}
	}
	return bp, n, rerr
}
