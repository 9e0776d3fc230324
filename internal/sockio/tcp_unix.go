//go:build unix

package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// TCP reads and writes a TCP connection through its descriptor, with the
// results and errors of the connection's own Read and Write. Deadlines
// and Close apply as they do to those.
type TCP struct {
	c  *net.TCPConn
	rc syscall.RawConn
}

// NewTCP returns a TCP for c, or nil if c is neither a *net.TCPConn nor
// a Wrapper of one (any other wrapper's Read and Write may do more than
// move bytes), or if its descriptor may block (NonBlocking).
func NewTCP(c any) *TCP {
	var tc *net.TCPConn
	switch c := c.(type) {
	case *net.TCPConn:
		tc = c
	case Wrapper:
		tc = c.RawTCP()
	}
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil || !NonBlocking(rc) {
		return nil
	}
	return &TCP{c: tc, rc: rc}
}

// A Wrapper wraps a *net.TCPConn whose Read and Write it does not
// change (it keeps books elsewhere, on Close say): RawTCP returns it, and
// ReaderOf and WriterOf read and write it.
type Wrapper interface{ RawTCP() *net.TCPConn }

// ReaderOf returns r, or for a *net.TCPConn (or a Wrapper) a TCP that
// reads it.
func ReaderOf(r io.Reader) io.Reader {
	if t := NewTCP(r); t != nil {
		return t
	}
	return r
}

// WriterOf returns w, or for a *net.TCPConn (or a Wrapper) a TCP that
// writes it.
func WriterOf(w io.Writer) io.Writer {
	if t := NewTCP(w); t != nil {
		return t
	}
	return w
}

// Read reads as net.Conn's Read does: io.EOF at the end.
func (t *TCP) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n    int
		rerr error
	)
	err := t.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = Read(int(fd), p)
			if rerr != syscall.EINTR {
				return rerr != syscall.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, opError("read", t.c, unwrapOp(err))
	case rerr != nil:
		return 0, opError("read", t.c, os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, as net.Conn's Write does.
func (t *TCP) Write(p []byte) (int, error) { return WriteConn(t.rc, p, t.c) }

// unwrapOp returns the error under a *net.OpError of the RawConn (whose
// operation is "raw-read" or "raw-write"), to be wrapped again under
// the name of the caller's operation.
func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}

// TryWrite writes what the socket of rc takes of p without waiting: 0
// and no error when it takes nothing now (EAGAIN).
func TryWrite(rc syscall.RawConn, p []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = Write(int(fd), p)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: werr}
	}
	return max(n, 0), nil
}
