//go:build !linux

package relay

import (
	"errors"
	"net"
)

// A Loop relays the small messages of many sessions on one goroutine
// (loop_linux.go). Elsewhere there is none: NewLoop returns nil, whose
// Join is the package's Join.
type Loop struct{}

// ErrLoopClosed is the error of a Join whose session a Loop's Close cut.
var ErrLoopClosed = errors.New("relay: the relay loop was closed under the session")

// NewLoop returns nil: only Linux has a Loop.
func NewLoop() (*Loop, error) { return nil, nil }

// Join is the package's Join.
func (l *Loop) Join(a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	return Join(a, b, count)
}

// Close does nothing.
func (l *Loop) Close() error { return nil }
