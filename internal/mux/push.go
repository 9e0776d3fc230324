package mux

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"rtcp/internal/sockio"
)

// WriteTo writes the stream's bytes to w until the peer's end (it returns
// nil) or an error, as io.Copy would with Read and w.Write, but without
// the copy and the wake-up per chunk: the bytes go from the session's read
// loop straight to w where they can.
//
// When w is a *net.TCPConn (or wraps one: Unwrap() *net.TCPConn) the read
// loop writes each arriving frame's bytes to the socket without blocking
// (a non-blocking write(2)); what the socket has no room for is kept in
// the stream's buffer, and WriteTo writes it with w.Write, in order,
// before the read loop delivers again. For any other w, WriteTo writes the
// stream's buffer to w as it fills, with no copy through a buffer of its
// own. Nothing else may read the stream, or write w, while WriteTo runs
// (the read loop waits for w's write lock).
//
// If the stream is cut (by the session, a stall say; by the peer's abort;
// by the loss of its link) while WriteTo waits in w.Write, the cut ends
// that write with a write deadline in the past, and WriteTo clears w's
// write deadline before it returns the cut's error. Once cut, WriteTo
// waits for w no more: what w does not take at once is dropped, and the
// error says so (giveUpLocked). The peer's clean end is no cut: WriteTo
// then writes every byte, waiting for w as long as it takes.
func (st *Stream) WriteTo(w io.Writer) (int64, error) { return st.PushTo(w, nil) }

// PushTo is WriteTo calling count (if not nil) with the size of each
// piece written, from the read loop or from PushTo's goroutine.
func (st *Stream) PushTo(w io.Writer, count func(n int)) (int64, error) {
	p := newPusher(w, count)
	st.mu.Lock()
	st.setSinkLocked(p)
	st.mu.Unlock()
	n, err, _ := st.pushRun(p)
	return n, err
}

// PushAsync is PushTo without a goroutine of its own while the stream is
// idle: it returns at once, and done is called with what PushTo would
// return, once, on a goroutine of PushAsync's (never the caller's or the
// read loop's, and with no lock held: done may block). Until then
// nothing else may read the stream, or write w.
//
// While the read loop can write the stream's bytes straight to w (a TCP
// socket with room), no goroutine runs for it: one is started when there
// is work the read loop must not do, bytes that wait for room in w (or
// any bytes, for a w that is not a socket), the stream's end or error,
// Close, or a read deadline, and it ends when the work is done. An idle
// relayed session so holds one goroutine, the other direction's, where
// PushTo held two.
func (st *Stream) PushAsync(w io.Writer, count func(n int), done func(n int64, err error)) {
	st.pushAsync(w, count, done, nil)
}

// pushAsync is PushAsync calling parked (if not nil) each time its
// goroutine ends with nothing to do, for the tests.
func (st *Stream) pushAsync(w io.Writer, count func(n int), done func(n int64, err error), parked func()) {
	p := newPusher(w, count)
	p.done, p.onPark = done, parked
	st.mu.Lock()
	st.setSinkLocked(p)
	idle := st.parkLocked(p)
	st.mu.Unlock()
	if idle {
		if parked != nil {
			parked()
		}
		return
	}
	go st.pushOn(p)
}

// newPusher returns the stream's sink for w: once it is set, the read
// loop delivers to w.
func newPusher(w io.Writer, count func(n int)) *pusher {
	p := &pusher{w: w, ww: sockio.WriterOf(w), count: count} // w.Write, or its descriptor's for a *net.TCPConn
	if tc := tcpConnOf(w); tc != nil {
		if rc, err := tc.SyscallConn(); err == nil && sockio.NonBlocking(rc) {
			p.raw = rc
		}
	}
	return p
}

// setSinkLocked makes p the stream's sink: the read loop delivers to it.
// A stream already cut gives up on it at once (giveUpLocked). st.mu is
// held.
func (st *Stream) setSinkLocked(p *pusher) {
	st.sink = p
	if st.rerr != nil {
		st.giveUpLocked()
	}
}

// giveUpLocked tells the stream's push (PushTo, PushAsync) that the
// stream was cut: by the session, by the peer's abort, by the loss of
// the link. From then on the push does not wait for its destination,
// which may never take another byte (a client that stopped reading) and
// would hold the push, the relay and the stream's buffers until it read
// or went: a write in progress ends at once with a write deadline in the
// past (abandon), and what is left goes only as far as the destination
// takes it without waiting (a writer that has no write deadline is
// written as before). What it does not take is lost, and the push
// returns the cut's error, for the relay to cut the destination with.
// st.mu is held.
func (st *Stream) giveUpLocked() {
	p := st.sink
	if p == nil || p.cut {
		return
	}
	p.cut = true
	if st.draining > 0 {
		p.abandon()
	}
}

// pushOn is PushAsync's goroutine: it runs until the push has nothing to
// do (it parks: a later restart runs pushOn anew) or it ends.
func (st *Stream) pushOn(p *pusher) {
	n, err, parked := st.pushRun(p)
	if parked {
		if p.onPark != nil {
			p.onPark()
		}
		return
	}
	p.done(n, err)
}

// parkLocked parks p, PushAsync's, if it has nothing to do: nothing
// buffered or queued, no end, error or Close, and no read deadline to
// wait for. A restart (unparkLocked) follows any of these. st.mu is held.
func (st *Stream) parkLocked(p *pusher) bool {
	if p.done == nil || p.err != nil || len(st.queue) > 0 || st.roff < len(st.rbuf) ||
		st.rerr != nil || st.rclosed || st.rd.IsSet() {
		return false
	}
	select {
	case <-st.closed:
		return false
	default:
	}
	p.parked = true
	return true
}

// unparkLocked returns the stream's parked sink, no longer parked, for
// its caller to restart (go st.pushOn), or nil. st.mu is held.
func (st *Stream) unparkLocked() *pusher {
	p := st.sink
	if p == nil || !p.parked {
		return nil
	}
	p.parked = false
	return p
}

// readable wakes the stream's reader, which has something to do: a Read,
// WaitRead or PushTo waiting, or PushAsync's sink, parked.
func (st *Stream) readable() {
	signal(st.readReady)
	st.unpark()
}

// unpark restarts PushAsync's sink if it is parked.
func (st *Stream) unpark() {
	st.mu.Lock()
	p := st.unparkLocked()
	st.mu.Unlock()
	st.restart(p)
}

// restart runs p, which unparkLocked returned, on a goroutine of its own.
func (st *Stream) restart(p *pusher) {
	if p != nil {
		go st.pushOn(p)
	}
}

// pushRun is PushTo's loop. Under PushAsync it returns parked, and the
// push goes on, when it has nothing to do.
func (st *Stream) pushRun(p *pusher) (n int64, err error, parked bool) {
	for {
		select {
		case <-st.closed:
			return st.endPush(p), st.opErr("read", net.ErrClosed), false
		default:
		}
		if st.rd.Passed() {
			return st.endPush(p), st.opErr("read", errTimeout), false
		}
		st.mu.Lock()
		if p.err != nil {
			err := p.err
			st.mu.Unlock()
			return st.endPush(p), err, false
		}
		if len(st.queue) > 0 {
			// Bytes that came while the destination was full wait in
			// the queue, ahead of rbuf's: write them, waiting for room.
			q := st.popLocked()
			st.draining = q.n
			cut := p.cut
			st.mu.Unlock()
			n, err := p.write(q.data, q.p, q.n, cut)
			st.done(q, q.n-n)
			p.add(n)
			st.mu.Lock()
			err = st.pushedLocked(p, err)
			st.draining = 0
			grant := st.consumed(n, err == nil && n == q.n && st.bufferedLocked() == 0)
			st.mu.Unlock()
			st.grant(grant)
			if err != nil {
				return st.endPush(p), err, false
			}
			continue
		}
		if st.roff < len(st.rbuf) {
			buf := st.rbuf
			chunk := buf[st.roff:]
			st.rbuf, st.roff = nil, 0
			st.draining = len(chunk)
			cut := p.cut
			st.mu.Unlock()
			n, err := p.write(chunk, nil, len(chunk), cut)
			p.add(n)
			st.mu.Lock()
			err = st.pushedLocked(p, err)
			st.draining = 0
			putRbuf(buf)
			grant := st.consumed(n, err == nil && n == len(chunk) && st.bufferedLocked() == 0)
			st.mu.Unlock()
			st.grant(grant)
			if err != nil {
				return st.endPush(p), err, false
			}
			continue
		}
		if st.rerr != nil {
			err := st.rerr
			st.mu.Unlock()
			return st.endPush(p), st.opErr("read", err), false
		}
		if st.rclosed {
			st.mu.Unlock()
			return st.endPush(p), nil, false
		}
		if st.parkLocked(p) {
			st.mu.Unlock()
			return 0, nil, true
		}
		st.mu.Unlock()
		select {
		case <-st.readReady:
		case <-st.rd.Wait():
		case <-st.closed:
		}
	}
}

// endPush stops the read loop's deliveries, then reads the count: none
// may come after the push has ended.
func (st *Stream) endPush(p *pusher) int64 {
	st.mu.Lock()
	st.sink = nil
	st.destSink = nil // keep no reference to w
	var lost error
	if p.cut {
		// The stream was cut, and what the destination did not take is
		// lost (giveUpLocked): its buffers go now.
		p.clearDeadlineLocked()
		st.releaseQueueLocked()
		putRbuf(st.rbuf)
		st.rbuf, st.roff = nil, 0
	} else {
		lost = st.unqueueLocked() // a Read may follow: what is queued goes to rbuf
	}
	st.mu.Unlock()
	if lost != nil {
		st.s.cutAside(st, lost)
	}
	p.counting.Wait() // the read loop's last count comes before the end
	return p.n.Load()
}

// pushedLocked returns the error of a write of PushTo's: if a cut
// abandoned it meanwhile, the cut's error, not the deadline's, and no
// deadline is left on the destination. st.mu is held.
func (st *Stream) pushedLocked(p *pusher, err error) error {
	p.clearDeadlineLocked()
	if err != nil && p.cut {
		err = st.opErr("read", st.rerr)
	}
	return err
}

// deliver is push's fast path under WriteTo: with st.mu held and nothing
// buffered, write what the socket takes at once. It returns the bytes
// left for the buffer.
func (st *Stream) deliver(data []byte) (rest []byte, delivered, grant int) {
	p := st.sink
	if p == nil || p.raw == nil || st.draining > 0 || st.roff < len(st.rbuf) || len(st.queue) > 0 || p.err != nil {
		return data, 0, 0
	}
	n, err := tryWrite(p.raw, data)
	if n > 0 {
		p.delivered(n)
		grant = st.consumed(n, n == len(data))
	}
	if err != nil {
		// The destination failed: WriteTo returns the error, and what
		// still arrives for the stream is dropped (the relay cuts it).
		p.err = err
		return nil, n, grant
	}
	return data[n:], n, grant
}

// grant sends the peer credit from consumed. st.mu must not be held: the
// queue's lock is taken before a stream's (enqueueStreamEnd).
func (st *Stream) grant(n int) {
	if n > 0 {
		st.s.enqueue(&Frame{Kind: KindData, ID: st.id, Credit: n})
	}
}

func tcpConnOf(w io.Writer) *net.TCPConn {
	switch c := w.(type) {
	case *net.TCPConn:
		return c
	case interface{ Unwrap() *net.TCPConn }:
		return c.Unwrap()
	}
	return nil
}

// pusher is WriteTo's destination, read by the read loop under st.mu.
type pusher struct {
	w   io.Writer
	ww  io.Writer       // w.Write, or its descriptor's for a *net.TCPConn
	raw syscall.RawConn // non-nil: the read loop may write without blocking
	err error           // the destination failed (set under st.mu)
	// PushAsync's: done ends it; parked says that no goroutine runs it
	// (under st.mu); onPark is the tests' hook.
	done   func(int64, error)
	parked bool
	onPark func()
	// cut says the stream was cut: the push no longer waits for w
	// (giveUpLocked); abandoned, that the cut set a past write deadline
	// on w. Both under st.mu.
	cut, abandoned bool
	n              atomic.Int64
	count          func(int)
	// counting counts the read loop's deliveries whose count is still
	// to be called (delivered, then countDelivered): the push's end
	// waits for them.
	counting sync.WaitGroup
}

// abandon ends PushTo's write to the destination, which may never end,
// with a write deadline in the past: the stream was cut, and PushTo
// returns the cut's error (and clears the deadline). st.mu is held.
func (p *pusher) abandon() {
	if d, ok := p.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		p.abandoned = true
		d.SetWriteDeadline(time.Unix(1, 0))
	}
}

// clearDeadlineLocked clears the write deadline abandon set, if it did.
// st.mu is held.
func (p *pusher) clearDeadlineLocked() {
	if p.abandoned {
		p.abandoned = false
		p.w.(interface{ SetWriteDeadline(time.Time) error }).SetWriteDeadline(time.Time{})
	}
}

// errGaveUp is the error of a write that a cut stream's push did not
// wait for (pusher.write); pushedLocked returns the cut's instead.
var errGaveUp = errors.New("rtcp: the destination was not waited for: the stream was cut")

// write writes data, or the n bytes in pipe pp, to the destination for
// pushRun, waiting for room; once the stream was cut (cut, read under
// st.mu), only what the destination takes at once (giveUpLocked).
func (p *pusher) write(data []byte, pp *pipe, n int, cut bool) (int, error) {
	switch {
	case !cut:
		if pp != nil {
			return spliceOutWait(p.raw, pp, n)
		}
		return p.ww.Write(data)
	case p.raw != nil:
		var (
			sent int
			err  error
		)
		if pp != nil {
			sent, err = spliceDrain(p.raw, pp, n)
		} else {
			sent, err = tryWrite(p.raw, data)
		}
		if err == nil && sent < n {
			err = errGaveUp
		}
		return sent, err
	}
	if _, ok := p.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return 0, errGaveUp // a write might wait, and nothing could end it
	}
	return p.ww.Write(data)
}

func (p *pusher) add(n int) {
	p.n.Add(int64(n))
	p.counted(n)
}

// delivered adds n bytes the read loop wrote to the destination, whose
// count it calls (countDelivered) once st.mu is released. st.mu is held.
func (p *pusher) delivered(n int) {
	p.n.Add(int64(n))
	if p.count != nil {
		p.counting.Add(1)
	}
}

// countDelivered calls count for n bytes of the read loop's, given to
// delivered (or none), with no lock held.
func (p *pusher) countDelivered(n int) {
	if n > 0 && p.count != nil {
		p.count(n)
		p.counting.Done()
	}
}

// counted calls count, never with a stream's lock held: a count that
// calls the stream (Abort on a quota, say) must not deadlock the link.
func (p *pusher) counted(n int) {
	if n > 0 && p.count != nil {
		p.count(n)
	}
}
