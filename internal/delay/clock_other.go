//go:build !linux

package delay

import (
	"errors"
	"time"
)

// A clock wakes its goroutine at a time more precisely than Go's timers;
// only on Linux (a timerfd). Elsewhere the relay waits on timers alone.
type clock struct{}

func newClock() (*clock, error) { return nil, errors.New("delay: no precise clock on this system") }

func (*clock) sleep(time.Duration) error { return nil }

func (*clock) close() {}
