//go:build !linux

package relay

import (
	"context"
	"errors"
	"net"
)

// A Loop relays the small messages of many sessions on one goroutine
// (loop_linux.go). Elsewhere there is none: a Loop's Join is the
// package's Join.
type Loop struct{}

// ErrLoopClosed is the error of a Join whose session a Loop's Close cut.
var ErrLoopClosed = errors.New("relay: the relay loop was closed under the session")

// NewLoop returns a Loop whose Join is the package's Join.
func NewLoop() (*Loop, error) { return new(Loop), nil }

// Join is the package's Join.
func (l *Loop) Join(a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	return Join(a, b, count)
}

// JoinContext is the package's Join: ctx does not end it (the loop takes
// no session here); the caller's Close of a or b does.
func (l *Loop) JoinContext(ctx context.Context, a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	return Join(a, b, count)
}

// Loopable returns false: the loop takes no session here.
func Loopable(a, b net.Conn) bool { return false }

// Len returns 0: the loop holds no session here.
func (l *Loop) Len() int { return 0 }

// Close does nothing.
func (l *Loop) Close() error { return nil }
