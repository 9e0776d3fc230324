// Package deadline provides the deadline primitive that every rtcp Conn uses:
// a channel that is closed when the deadline passes, selected on by every
// blocking call. It is net/pipe.go's pipeDeadline, exported for our packages.
package deadline

import (
	"sync"
	"time"
)

// Deadline is a settable point in time whose passing closes a channel.
// The zero value is not usable; call New.
type Deadline struct {
	mu     sync.Mutex // guards timer and cancel
	timer  *time.Timer
	cancel chan struct{} // never nil
}

// New returns a Deadline that has not been set.
func New() *Deadline {
	return &Deadline{cancel: make(chan struct{})}
}

// Set sets the point in time when the deadline passes. A zero t means no
// deadline; a t in the past closes the Wait channel at once. Once passed, a
// deadline can be refreshed by a later t.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()

	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // wait for the timer callback to close cancel
	}
	d.timer = nil

	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// Wait returns a channel that is closed when the deadline has passed.
func (d *Deadline) Wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// IsSet reports whether a deadline is set: pending or passed.
func (d *Deadline) IsSet() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.timer != nil || isClosed(d.cancel)
}

// Passed reports whether the deadline has passed.
func (d *Deadline) Passed() bool { return isClosed(d.Wait()) }

// Stop releases the timer, if any; the deadline stays as it is.
func (d *Deadline) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && d.timer.Stop() {
		d.timer = nil
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
