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
type rawReader struct {
	rc syscall.RawConn

	// inq reads for copySmall where TCP_INQ tells what a read left
	// (sockio.EnableInq; nil elsewhere). Made at its first call: a
	// connection that never copies small pieces goes without.
	inq   *sockio.Inq
	tried bool
}

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
// within one wait of src's poller. Where TCP_INQ tells that a read left
// nothing (sockio.Inq), the copy waits for src's next bytes at once,
// without the read that would find nothing (once a read of the same
// RawConn.Read has found nothing: see drained): each Read of a net.Conn, and
// each read here before, starts by forgetting the poller's word that src
// is readable (Go's poller is edge-triggered), so it must read to learn
// that there is nothing; a RawConn.Read forgets it only at its start, so
// an edge that comes while the copy writes is kept, and the wait that
// follows ends at once. That is one system call of three per small
// message and direction (scripts/bench-redis: docs/performance.md).
//
// It returns at src's end or error, at dst's error, when a read filled
// the buffer (burst: the caller splices what follows), or when dst took
// only part of a piece (rest: the caller writes it and may wait, outside
// src's read, which resetWatch needs). count is called with each piece
// written, within src's RawConn.Read: it must not block, nor close src
// (Close waits for the read to end). Deadlines and Close interrupt it as
// they do src's Read, at its next wait.
func (r *rawReader) copySmall(pool *sync.Pool, dst syscall.RawConn, count func(int64)) (c smallCopy) {
	if !r.tried {
		r.tried = true
		if sockio.EnableInq(r.rc) {
			r.inq = new(sockio.Inq)
		}
	}
	var (
		rerr error
		// drained says that a read since the RawConn.Read began found
		// nothing (EAGAIN), and no error either: from then on a reset,
		// like bytes or an end, comes with an edge that the poller
		// keeps. One before it may have come with an edge that the
		// RawConn.Read forgot at its start, behind bytes that a read
		// then returns with TCP_INQ's 0 (it says 1 after a FIN, not
		// after a reset): a wait for the next edge would never end. So
		// a read's 0 spares the next read only once drained.
		drained bool
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			if c.bp == nil {
				c.bp = pool.Get().(*[]byte)
			}
			b := *c.bp
			var (
				k    int
				left = -1
			)
			if r.inq != nil {
				k, left, rerr = r.inq.Read(int(fd), b)
			} else {
				k, rerr = sockio.Read(int(fd), b)
			}
			switch {
			case rerr == syscall.EINTR:
				continue
			case rerr == syscall.EAGAIN:
				rerr, drained = nil, true
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
			if left == 0 && drained {
				pool.Put(c.bp) // wait without the buffer, and without a read
				c.bp = nil
				return false
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
