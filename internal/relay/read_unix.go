//go:build unix

package relay

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"rtcp/internal/sockio"
)

// rawReader reads a TCP connection through its descriptor, so that no
// buffer is held while the connection has nothing to read.
type rawReader struct{ rc syscall.RawConn }

func newRawReader(tc *net.TCPConn) rawSource {
	rc, err := tc.SyscallConn()
	if err != nil || !sockio.NonBlocking(rc) {
		return nil
	}
	return &rawReader{rc}
}

// read reads into a buffer from pool. It returns the buffer (nil if no
// bytes came) and the number of bytes, or io.EOF at the end. Deadlines and
// Close interrupt it as they do the connection's Read.
func (r *rawReader) read(pool *sync.Pool) (*[]byte, int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		bp = pool.Get().(*[]byte)
		for {
			n, rerr = sockio.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			// Nothing to read: wait without the buffer.
			pool.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	switch {
	case err != nil: // closed, or a deadline
		rerr = err
	case rerr != nil:
		rerr = os.NewSyscallError("read", rerr)
	case n == 0:
		rerr = io.EOF
	}
	if n <= 0 {
		n = 0
		if bp != nil {
			pool.Put(bp)
			bp = nil
		}
	}
	return bp, n, rerr
}
