package rtcp

import (
	"context"
	"errors"
	"testing"
	"time"
)

// hungRegistry is a Registry whose Register hangs until its context ends.
type hungRegistry struct {
	MemoryRegistry
	entered chan struct{} // a Register has begun
	ended   chan error    // the context error that ended it
}

func (r *hungRegistry) Register(ctx context.Context, _ Registration) error {
	r.entered <- struct{}{}
	<-ctx.Done()
	r.ended <- ctx.Err()
	return ctx.Err()
}

// TestCloseInterruptsRegister: DiscoverPoint.Close ends a registration
// that hangs in the Registry, rather than waiting out HandshakeTimeout.
func TestCloseInterruptsRegister(t *testing.T) {
	reg := &hungRegistry{entered: make(chan struct{}, 1), ended: make(chan error, 1)}
	dp := &DiscoverPoint{Registry: reg, HandshakeTimeout: time.Hour}
	addr := startDP(t, dp)
	listened := make(chan error, 1)
	go func() {
		l, err := Listen(addr, "stuck")
		if err == nil {
			l.Close()
		}
		listened <- err
	}()
	<-reg.entered
	dp.Close()
	if err := <-reg.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the registry call ended with %v, want %v (from Close)", err, context.Canceled)
	}
	if err := <-listened; err == nil {
		t.Error("Listen succeeded at a DP closed while it registered")
	}
}
