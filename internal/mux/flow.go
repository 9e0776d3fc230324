package mux

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Flow control has two halves, one for each kind of peer.
//
// A peer that does flow control (rtcp's JSON credit extension, yamux)
// sends no more than the credit it was granted. Each stream's receive
// window starts at Config.Window and grows, up to Config.MaxWindow, at
// the end of each epoch (from one grant to the next) in which the
// stream's reader caught up with the peer and took the epoch's bytes
// faster than a quarter of the window per round trip: then the window,
// not the reader, holds the peer back, as on a path whose round trip is
// longer than window/bandwidth (quic-go's rule). It doubles, and once it
// has doubled twice it grows to twice the bandwidth-delay product the
// epoch measured, at least double and at most four times (growth): up
// to 16 times per round trip. The round trip is the shortest the
// session has timed. A stream whose reader falls behind
// never grows, nor one whose TCP destination's peer is not taking the
// bytes, and growth is paid for from two budgets (the link's and, if set,
// one shared by many links), so memory stays bounded: when a budget is
// spent, credit is withheld.
//
// A peer that does no flow control (every original: Plan5's own code,
// Mihini, tcpipe) writes as fast as TCP takes its bytes. When one of its
// streams has Config.MaxBuffer bytes waiting for their reader, the session
// stops reading the link until the reader takes some, and TCP holds the
// peer back. The link's other streams wait meanwhile; Config.StallTimeout
// bounds how long a stream that makes no progress may hold them.

// A Budget bounds the bytes that receive windows may grow by, across the
// sessions that share it. It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
	peak  atomic.Int64 // the most used at once
}

// NewBudget returns a Budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used returns the bytes taken from b now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Peak returns the most ever taken from b at once.
func (b *Budget) Peak() int64 { return b.peak.Load() }

// take takes up to want bytes from b and returns how many it took.
func (b *Budget) take(want int) int {
	for {
		used := b.used.Load()
		n := min(int64(want), b.limit-used)
		if n <= 0 {
			return 0
		}
		if b.used.CompareAndSwap(used, used+n) {
			for p := b.peak.Load(); used+n > p && !b.peak.CompareAndSwap(p, used+n); p = b.peak.Load() {
			}
			return int(n)
		}
	}
}

func (b *Budget) give(n int) { b.used.Add(-int64(n)) }

// bufferedLocked returns the bytes the stream holds for its reader,
// counting those a WriteTo is writing. st.mu is held.
func (st *Stream) bufferedLocked() int {
	return len(st.rbuf) - st.roff + st.draining + st.queued
}

// wouldOverrun reports whether n more bytes would pass the window the
// stream gave its peer. st.mu is held.
func (st *Stream) wouldOverrun(n int) bool {
	return st.s.cfg.FlowControl && st.avail < n
}

// received counts n bytes of the peer's arriving for st and reports
// whether they overran the credit the peer was granted. st.mu is held.
func (st *Stream) received(n int) (overrun bool) {
	if !st.s.cfg.FlowControl {
		return false
	}
	st.avail -= n
	return st.avail < 0
}

// consumed counts n bytes handed on from the stream (read, or written to
// its destination) and returns the credit to grant the peer now, if any.
// caughtUp says nothing is left buffered: the reader waits for the peer.
// st.mu is held.
func (st *Stream) consumed(n int, caughtUp bool) int {
	if !st.s.cfg.FlowControl {
		if n > 0 {
			signal(st.room)
		}
		return 0
	}
	if st.rclosed || st.rerr != nil || st.released {
		return 0 // nothing more comes: no credit, and no growth to give back
	}
	st.unacked += n
	st.sinceGrow += n
	st.caughtUp = st.caughtUp || caughtUp
	grant := 0
	if st.unacked >= grantAt(st.win) {
		grant = st.unacked + st.maybeGrow()
		st.unacked = 0
		st.avail += grant
	}
	return grant
}

// grantAt returns how many consumed bytes a stream with window win
// gathers before it grants them back. Half the window keeps grant frames
// few, but the sender then waits for a grant with half the window spent
// in flight: a window w moves only w/(2 RTT), and grows once per round
// trip at most (an epoch ends at a grant). So a window grants every
// quarter of itself, and one grown past 256 KiB every eighth, which
// moves w/(1.125 RTT).
func grantAt(win int) int {
	if win <= 256<<10 {
		return win / 4
	}
	return max(128<<10, win/8)
}

// maybeGrow ends the window's epoch, which began at the last grant (or
// the open). If the reader caught up with the peer during it and took
// the epoch's bytes faster than a quarter of the window per round trip,
// the window, not the reader, held the peer back: it grows (growth), as
// far as MaxWindow and the budgets allow (quic-go's rule; one stream
// takes at most half of the shared budget, so two that were fast once
// can still hold it all), unless the reader is a TCP destination whose
// peer did not take half of them. It returns the bytes added. st.mu is
// held.
//
// The epoch keeps the time the reader waited for the peer: a reader that
// is fast whenever bytes are there is not proof that the window holds
// the peer back (the streams of a busy link wait for each other), only
// an epoch whose bytes came at more than a quarter window per round trip
// is. A window held back by the round trip arrives in bursts, so the
// first epoch of each burst, which spans the wait for it, is slow, and
// its later ones fast.
func (st *Stream) maybeGrow() int {
	s := st.s
	now := time.Now()
	start, took, caughtUp := st.epoch, st.sinceGrow, st.caughtUp
	st.epoch, st.sinceGrow, st.caughtUp = now, 0, false
	if start.IsZero() || !caughtUp || st.win >= s.cfg.MaxWindow {
		return 0
	}
	rtt, d := s.RTT(), now.Sub(start)
	if limit := time.Duration(4 * float64(took) / float64(st.win) * float64(rtt)); d >= limit {
		return 0
	}
	if p := st.sink; p != nil && p.raw != nil {
		// A reader that writes into a TCP socket looks fast while the
		// kernel takes the bytes, even when the socket's peer has
		// stopped reading, and a window grown then is only what the
		// stream holds once it stalls. So the destination's peer must
		// have acknowledged half of what the epoch handed on.
		acked := p.n.Load() - int64(unsent(p.raw))
		mark, sink := st.destAcked, st.destSink
		st.destAcked, st.destSink = acked, p
		if sink != p || acked-mark < int64(took/2) {
			return 0
		}
	}
	want := st.win
	if st.win >= 4*s.cfg.Window {
		// Only a window that has doubled twice may grow faster: a
		// client that has stopped reading looks fast while its kernel
		// takes the first bytes (a window's worth or two), and every
		// stalled session keeps what its window grew to then.
		want = growth(st.win, took, d, rtt)
	}
	want = min(want, s.cfg.MaxWindow-st.win)
	if b := s.cfg.Budget; b != nil {
		// One stream takes at most half of the shared budget: growth is
		// given back only when the stream ends, and a session that was
		// fast once must not keep every other from growing.
		want = min(want, int(b.limit/2)-st.grown)
	}
	if want <= 0 {
		return 0
	}
	got := s.linkBudget.take(want)
	if b := s.cfg.Budget; b != nil && got > 0 {
		shared := b.take(got)
		s.linkBudget.give(got - shared)
		got = shared
	}
	st.win += got
	st.grown += got
	return got
}

// growth returns what a window win grows by after a fast epoch that
// took bytes in d on a path of round trip rtt: to twice the
// bandwidth-delay product the epoch measured (took/d*rtt; grpc-go's BDP
// estimator), but at least double and at most four times win, so that a
// window grows by at most 24 times the bytes that proved the reader fast
// (an epoch takes at least win/8). Four times, not more: a burst of a
// window w granted every w/8 then grows it at w/4 and again at 3w/4, 16
// times in a round trip, where doubling grew it 8 times (w/4, w/2, w) and
// one step of 8 or 16 times pushes the next grant past the burst.
func growth(win, took int, d, rtt time.Duration) int {
	if d <= 0 {
		return 3 * win
	}
	bdp := float64(took) / float64(d) * float64(rtt)
	return int(min(max(2*bdp, 2*float64(win)), 4*float64(win))) - win
}

// ObserveRTT tells the session of a round trip to its peer that took d
// (a handshake, say); the session times its own opens too. Window growth
// uses the shortest seen: an open's round trip includes the time the peer
// took to answer, which a burst of opens or a slow accept makes long,
// while only the path's own round trip says how much a window must hold
// (as BBR keeps the minimum, not an average).
func (s *Session) ObserveRTT(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		old := s.rtt.Load()
		if old != 0 && old <= int64(d) {
			return
		}
		if s.rtt.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// RTT returns the shortest round trip the session has seen, or DefaultRTT
// before it has one.
func (s *Session) RTT() time.Duration {
	if d := s.rtt.Load(); d > 0 {
		return max(time.Duration(d), s.cfg.MinRTT)
	}
	return max(DefaultRTT, s.cfg.MinRTT)
}

// DefaultMaxWindow is the MaxWindow rtcp's links use: a stream with a
// 256 MiB window moves 1.2 GB/s over a 200 ms round trip (a window
// moves window/(1.125 RTT), see grantAt), more than a plain relay moves
// over such a path in rtcp bench -rtt. 64 MiB held one to 300 MB/s.
const DefaultMaxWindow = 256 << 20

// DefaultRTT is the round trip a session assumes until it has timed one.
const DefaultRTT = 10 * time.Millisecond

// ReceiveWindow returns the stream's receive window now: the most its
// peer may have sent and it not yet read (flow control), or 0.
func (st *Stream) ReceiveWindow() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.win
}

// releaseWindow gives back what the stream's window grew by, once the
// stream is forgotten (no more bytes can arrive for it).
func (st *Stream) releaseWindow() {
	st.mu.Lock()
	n := st.grown
	st.grown = 0
	st.released = true
	st.mu.Unlock()
	if n > 0 {
		st.s.linkBudget.give(n)
		if b := st.s.cfg.Budget; b != nil {
			b.give(n)
		}
	}
}

// waitRoom holds the read loop while st, which push found full, has
// MaxBuffer bytes waiting for its reader (no flow control). If the reader
// takes nothing for StallTimeout while other streams share the link, st
// is cut so that they can go on.
func (s *Session) waitRoom(st *Stream) {
	var stall *time.Timer
	if s.cfg.StallTimeout > 0 {
		stall = time.NewTimer(s.cfg.StallTimeout)
		defer stall.Stop()
	}
	var expired <-chan time.Time
	if stall != nil {
		expired = stall.C
	}
	for {
		st.mu.Lock()
		full := st.bufferedLocked() >= s.cfg.MaxBuffer && st.rerr == nil
		st.mu.Unlock()
		if !full {
			return
		}
		select {
		case <-st.room:
			if stall != nil {
				stall.Reset(s.cfg.StallTimeout)
			}
		case <-st.closed:
			return
		case <-s.done:
			return
		case <-expired:
			if others := s.waiting() - 1; others > 0 {
				s.cutStalled(st, others)
				return
			}
			stall.Reset(s.cfg.StallTimeout)
		}
	}
}

// waiting returns the streams and the opens waiting for their Ack on the
// session: what a stalled stream holds up.
func (s *Session) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams) + len(s.pending)
}

// cutStalled cuts st, whose reader took nothing for StallTimeout while
// others streams waited behind it. Its reader still gets what it holds,
// then the error.
func (s *Session) cutStalled(st *Stream, others int) {
	s.cut(st, &CutError{Msg: fmt.Sprintf("rtcp: session %d on the %s cut: its reader took nothing for %v while %d other sessions waited behind it "+
		"(the peer does no flow control, so a full session stops the whole link); raise the stall timeout if a reader may pause that long",
		st.id, s.cfg.Name, s.cfg.StallTimeout, others)})
}

// A CutError is why the session itself cut a stream; the session has
// logged it (Config.Logger), so a relay that ends with it need not.
type CutError struct{ Msg string }

func (e *CutError) Error() string { return e.Msg }

// cut ends st for err from the read loop: its reader gets what it holds,
// then err; its writer gets err; the peer is told.
func (s *Session) cut(st *Stream, err error) {
	if s.cutStream(st, err) {
		s.readerCloseIfIdle() // on the read loop
	}
}

// cutAside is cut from another goroutine than the read loop (the
// stream's own reader).
func (s *Session) cutAside(st *Stream, err error) {
	if s.cutStream(st, err) {
		s.closeIfIdle()
	}
}

// cutStream is cut but for ending a draining session that it leaves
// idle: it reports whether st was the session's still, and so whether
// the peer was told.
func (s *Session) cutStream(st *Stream, err error) bool {
	st.mu.Lock()
	if st.rerr == nil {
		st.rerr = err
	}
	st.werr = err
	st.giveUpLocked()
	st.mu.Unlock()
	st.readable()
	signal(st.writeReady)
	if l := s.cfg.Logger; l != nil {
		l.Warn("rtcp: session cut", "link", s.cfg.Name, "session", st.id, "reason", err)
	}
	if !s.remove(st) {
		return false
	}
	s.enqueue(&Frame{Kind: KindClose, ID: st.id, Reason: err.Error(), Abort: true})
	return true
}
