//go:build unix

package delay

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// A rawReader reads a TCP connection through its descriptor, taking a
// buffer only once there is something to read: an idle connection holds
// none.
type rawReader interface {
	read(get func() *[]byte, put func(*[]byte)) (*[]byte, int, time.Time, error)
}

type rawConn struct {
	rc syscall.RawConn
	// oob takes a read's control messages, its receive timestamp
	// (stamp_linux.go); nil where there is none, and the connection is
	// read with read(2).
	oob []byte
}

func newRawReader(c net.Conn) rawReader {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawConn{rc: rc}
	if stamp(rc) {
		r.oob = make([]byte, stampSpace)
	}
	return r
}

// read returns the buffer (nil if no bytes came, then given back), the
// number of bytes read and when the last of them reached this host (zero
// if not known), or io.EOF at the end. Close interrupts it.
func (r *rawConn) read(get func() *[]byte, put func(*[]byte)) (*[]byte, int, time.Time, error) {
	var (
		bp      *[]byte
		n, oobn int
		rerr    error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		bp = get()
		for {
			if r.oob != nil {
				n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), *bp, r.oob, 0)
			} else {
				n, rerr = syscall.Read(int(fd), *bp)
			}
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
	var arrived time.Time
	if n <= 0 {
		n = 0
		if bp != nil {
			put(bp)
			bp = nil
		}
	} else if oobn > 0 {
		arrived = arrival(r.oob[:oobn])
	}
	return bp, n, arrived, rerr
}

// stampListener asks for receive timestamps (stamp) on l's connections
// from their first byte on, which may arrive before newRawReader asks:
// an accepted socket takes its listener's options.
func stampListener(l net.Listener) {
	if tl, ok := l.(*net.TCPListener); ok {
		if rc, err := tl.SyscallConn(); err == nil {
			stamp(rc)
		}
	}
}
