//go:build !unix

package relay

import (
	"net"
	"sync/atomic"
)

// resetWatch tells a reset on Linux only (watch_unix.go).
type resetWatch struct{}

func newResetWatch(dst, src *net.TCPConn, srcFin *atomic.Bool) *resetWatch { return nil }

func (w *resetWatch) start() (stop func() error) { return func() error { return nil } }

func (w *resetWatch) write(write func([]byte) (int, error), p []byte) (int, error, bool) {
	n, err := write(p)
	return n, err, false
}
