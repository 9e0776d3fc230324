package mux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"rtcp/internal/sockio"
)

// Keepalive has two halves. The sending half is the session's: every
// Config.KeepAlive of quiet it sends a KindKeepAlive frame, which the wire
// writes as its heartbeat. The noticing half is the reader's: an
// IdleReader under the Framer fails the link when no byte at all has
// arrived for its idle timeout. Counting bytes rather than frames means a
// long frame crawling over a slow path is not mistaken for silence.

// SetKeepAlive changes how often the session sends a KindKeepAlive frame
// while it has nothing else to send; zero stops them. Start them only once
// the wire's handshake is over: a heartbeat must never overtake it.
func (s *Session) SetKeepAlive(d time.Duration) {
	s.keepAlive.Store(int64(max(d, 0)))
	s.wake()
}

// heartbeat is the write loop's clock for KindKeepAlive frames.
type heartbeat struct {
	period time.Duration
	t      *time.Ticker
}

// tick returns the channel of the next heartbeat at period (nil: none),
// restarting the clock when period changes.
func (h *heartbeat) tick(period time.Duration) <-chan time.Time {
	if period != h.period {
		h.stop()
		h.period = period
		if period > 0 {
			h.t = time.NewTicker(period)
		}
	}
	if h.t == nil {
		return nil
	}
	return h.t.C
}

func (h *heartbeat) stop() {
	if h.t != nil {
		h.t.Stop()
		h.t = nil
	}
}

// An IdleReader reads a link's connection for its Framer and fails with a
// *SilentError when no byte arrives for the idle timeout: how a link
// notices a peer that died without closing, or a path that silently drops
// everything. Until SetIdleTimeout it only passes reads on, so a handshake
// can run on it first under deadlines of its own; after it, the
// IdleReader owns the connection's read deadline.
type IdleReader struct {
	c    net.Conn
	rd   io.Reader    // reads c (internal/sockio for a TCP connection)
	idle atomic.Int64 // time.Duration; 0: off
	next atomic.Int64 // the read deadline set last, in Unix nanoseconds
}

// NewIdleReader returns an IdleReader of c, not yet timing anything.
func NewIdleReader(c net.Conn) *IdleReader {
	return &IdleReader{c: c, rd: sockio.ReaderOf(c)}
}

// SetIdleTimeout starts failing reads after d without a byte (d > 0). Call
// it after the handshake has cleared its own deadline; it applies to a
// read already waiting too.
func (r *IdleReader) SetIdleTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	r.idle.Store(int64(d))
	r.arm(time.Now(), d)
}

func (r *IdleReader) arm(now time.Time, d time.Duration) {
	next := now.Add(d)
	r.next.Store(next.UnixNano())
	r.c.SetReadDeadline(next)
}

// SetIdleReader tells the session the IdleReader under its Framer, so that
// the bytes the session takes from the connection itself (the rest of a
// split Data frame, spliced) count as arrivals too.
func (s *Session) SetIdleReader(r *IdleReader) { s.idle.Store(r) }

// touch pushes the read deadline on, as a Read does, for bytes read from
// the connection without Read.
func (r *IdleReader) touch() {
	if r == nil {
		return
	}
	d := time.Duration(r.idle.Load())
	if d <= 0 {
		return
	}
	if now := time.Now(); time.Duration(r.next.Load()-now.UnixNano()) < d-d/16 {
		r.arm(now, d)
	}
}

// Read reads from the connection, pushing the read deadline on so that it
// is always between 15/16 and all of the idle timeout ahead: moving a
// deadline costs a little, and a link reads a lot.
func (r *IdleReader) Read(p []byte) (int, error) {
	d := time.Duration(r.idle.Load())
	if d <= 0 {
		return r.rd.Read(p)
	}
	r.touch()
	n, err := r.rd.Read(p)
	return n, r.silent(err)
}

// silent turns the deadline error of a read past the idle timeout into a
// *SilentError.
func (r *IdleReader) silent(err error) error {
	if r == nil || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if d := time.Duration(r.idle.Load()); d > 0 {
		return &SilentError{Idle: d}
	}
	return err
}

// SilentError ends a link on which nothing arrived for Idle: the peer has
// died or the path to it drops everything. It is not a timeout in the
// net.Error sense: the link is gone, not late.
type SilentError struct{ Idle time.Duration }

func (e *SilentError) Error() string {
	return fmt.Sprintf("nothing received for %v, not even a heartbeat: the peer is gone or the network drops everything", e.Idle)
}
