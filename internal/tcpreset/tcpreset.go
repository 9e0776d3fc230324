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
package tcpreset

import (
	"errors"
	"net"
	"syscall"
)

// ErrReset is what a read that returned io.EOF on a reset connection
// should have returned.
var ErrReset = errors.New("connection reset by peer (the reset was reported to an earlier write)")

// WasReset reports whether tc, whose read just returned io.EOF, was reset
// rather than closed. Ask only if this side has not called CloseWrite (or
// shut down its writing) on tc. It is false where the system cannot tell
// (only Linux can).
func WasReset(tc *net.TCPConn) bool {
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	reset := false
	rc.Control(func(fd uintptr) { reset = closedState(fd) })
	return reset
}

// Is reports whether err is a reset, whichever call it came from.
func Is(err error) bool {
	return errors.Is(err, ErrReset) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
