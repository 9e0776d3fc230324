// Package tcpreset tells a TCP connection's clean end from a reset that the
// operating system reported to another call.
//
// Linux reports a reset to one system call only. When a connection both
// reads and writes, and the write takes the reset, the read after it
// returns a bare end of file: a connection cut off in the middle looks
// complete. The state of the socket still tells: after the peer's FIN it
// is CLOSE_WAIT, after a reset CLOSE - as long as this side has not sent
// its own FIN: a socket whose orderly close it began is handed over to
// TIME_WAIT and left in CLOSE too. So ask only of a connection this side
// has not half-closed.
//
// It is also where rtcp finds the TCP connection under a connection (Of,
// Under) and chooses how it ends, with a FIN or a reset (SetReset).
package tcpreset

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// ErrReset is what a read that returned io.EOF on a reset connection
// should have returned.
var ErrReset = errors.New("connection reset by peer (the reset was reported to an earlier write)")

// WasReset reports whether tc, whose read just returned io.EOF, was reset
// rather than closed. Ask only if this side has not called CloseWrite (or
// shut down its writing) on tc, and look at that AFTER asking: a
// CloseWrite that another goroutine makes meanwhile can close the
// connection (its FIN acknowledged after the peer's), which looks like a
// reset here. It is false where the system cannot tell (only Linux can).
func WasReset(tc *net.TCPConn) bool {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	reset := false
	rc.Control(func(fd uintptr) { reset = closedState(fd) })
	return reset
}

// WasResetFD is WasReset for the descriptor fd of a TCP socket that the
// caller reads itself, outside the net package (relay.Loop), with the
// same caveat: not after this side has shut its writing.
func WasResetFD(fd int) bool { return closedState(uintptr(fd)) }

// Is reports whether err is a reset, whichever call it came from.
func Is(err error) bool {
	return errors.Is(err, ErrReset) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Of returns the TCP connection that c is, or carries byte for byte
// (Unwrap() *net.TCPConn: a wrapper that adds bookkeeping, not encoding),
// or nil. A relay may move the bytes of such a connection itself (splice
// them); a *tls.Conn is not one.
func Of(c net.Conn) *net.TCPConn {
	switch c := c.(type) {
	case *net.TCPConn:
		return c
	case interface{ Unwrap() *net.TCPConn }:
		return c.Unwrap()
	}
	return nil
}

// Under returns the TCP connection under c: Of's, or, through the
// layers that change the bytes (NetConn() net.Conn: a *tls.Conn, a
// connection read ahead), the one at the bottom; nil if there is none.
// Its socket is the one whose end is a FIN or a reset.
func Under(c net.Conn) *net.TCPConn {
	for c != nil {
		if tc := Of(c); tc != nil {
			return tc
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// SendsFIN reports whether c's CloseWrite sends a FIN on the TCP
// connection under it, after which its socket's state can look like a
// reset (WasReset) and must not be asked. Not through TLS: its CloseWrite
// writes close_notify, and leaves the socket's state to tell a reset of
// its peer's, which that very write may take.
func SendsFIN(c net.Conn) bool {
	for Of(c) == nil {
		if _, ok := c.(*tls.Conn); ok {
			return false
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return true
		}
		if c = nc.NetConn(); c == nil {
			return true
		}
	}
	return true
}

// SetReset makes tc end with a reset when it is closed (SO_LINGER 0), so
// that its peer sees an error rather than a clean end; or, with reset
// false, with a FIN again, the default. A nil tc is left alone.
func SetReset(tc *net.TCPConn, reset bool) {
	if tc == nil {
		return
	}
	if reset {
		tc.SetLinger(0)
	} else {
		tc.SetLinger(-1)
	}
}

// Reset closes c so that its peer sees a reset, not a clean end: the TCP
// connection under it (Under) is set to reset and closed first, so that
// no layer over it says a clean goodbye on the way (a *tls.Conn's Close
// sends close_notify, which its peer reads as io.EOF before the reset
// comes); then c, for what else its Close does (releasing it from a
// server's books, say). A c with no TCP connection under it is closed.
func Reset(c net.Conn) {
	if tc := Under(c); tc != nil {
		SetReset(tc, true)
		tc.Close()
	}
	c.Close()
}
