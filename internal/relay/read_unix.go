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
	return &rawReader{rc: rc}
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

// copySmall copies what src has to dst (a TCP socket of its own) while it
// comes in pieces smaller than the buffer and dst takes each at once,
// within one RawConn.Read of src. After each piece it reads again, and
// waits only when a read finds nothing (EAGAIN). Where TCP_INQ says that
// a read left nothing, a wait without that read looked safe (tried in
// bc7ca73 and ce059fb), the RawConn.Read keeping an edge that comes while
// the copy writes; it is not: a reset that comes close behind the piece
// raises no edge of its own when the poller has not yet passed the
// piece's on (one wake for both), TCP_INQ does not count it, and only a
// read tells it. The wait would never end, and the session would be held
// until its other side went (TestJoinTCPAnswerThenReset).
//
// It returns at src's end or error, at dst's error, when a read filled
// the buffer (burst: the caller splices what follows), or when dst took
// only part of a piece (rest: the caller writes it and may wait, outside
// src's read, which resetWatch needs). count is called with each piece
// written, within src's RawConn.Read: it must not block, nor close src
// (Close waits for the read to end). Deadlines and Close interrupt it as
// they do src's Read, at its next wait.
func (r *rawReader) copySmall(pool *sync.Pool, dst syscall.RawConn, count func(int64)) (c smallCopy) {
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			if c.bp == nil {
				c.bp = pool.Get().(*[]byte)
			}
			b := *c.bp
			var k int
			k, rerr = sockio.Read(int(fd), b)
			switch {
			case rerr == syscall.EINTR:
				continue
			case rerr == syscall.EAGAIN:
				rerr = nil
				pool.Put(c.bp) // wait without the buffer
				c.bp = nil
				return false
			case rerr != nil:
				rerr = os.NewSyscallError("read", rerr)
				return true
			case k == 0:
				rerr = io.EOF
				return true
			}
			w, werr := sockio.TryWrite(dst, b[:k])
			c.n += int64(w)
			if w > 0 {
				count(int64(w))
			}
			if werr != nil {
				c.err, c.wfail = werr, true
				return true
			}
			c.burst = k == len(b)
			if w < k {
				c.rest = b[w:k]
				return true
			}
			if c.burst {
				return true
			}
		}
	})
	if c.err == nil {
		c.err = rerr
		if err != nil { // closed, or a deadline
			c.err = err
		}
	}
	if c.rest == nil && c.bp != nil {
		pool.Put(c.bp)
		c.bp = nil
	}
	return c
}
