package mux

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"rtcp/internal/deadline"
)

var errTimeout = os.ErrDeadlineExceeded

// A Stream is one session on a link. It is a full net.Conn: deadlines,
// Close that unblocks every call, half-close with CloseWrite, and errors
// wrapped in *net.OpError.
type Stream struct {
	s             *Session
	id            int64
	name, addr    string
	token         string
	ext           any // the open frame's Frame.Ext, on the accepting side
	local, remote net.Addr

	mu      sync.Mutex
	rbuf    []byte
	roff    int
	rclosed bool  // the peer will send no more: io.EOF once rbuf is read
	rerr    error // the stream was cut off: returned once rbuf is read
	werr    error // writes fail with this
	credit  int   // bytes we may still send (flow control)
	unacked int   // bytes read that we have not granted back yet
	// The receive window (flow control, flow.go): win is its size now,
	// avail the credit the peer has left, grown what it took from the
	// budgets. Its epoch began at the last grant; since then sinceGrow
	// bytes were handed on, and caughtUp says the reader emptied the
	// buffer at least once.
	win, avail, sinceGrow, grown int
	released                     bool // releaseWindow ran: the window never grows again
	epoch                        time.Time
	caughtUp                     bool
	// destAcked is what the destination's peer had acknowledged of the
	// bytes destSink wrote when the epoch began (SIOCOUTQ; flow.go).
	destAcked int64
	destSink  *pusher
	// opened is when the opener sent an open that is acknowledged
	// (Semantics.AckOpens), to time the round trip; guarded by the
	// session's mu.
	opened time.Time
	// room is signalled as bytes are handed on without flow control, for
	// a read loop waiting in waitRoom.
	room     chan struct{}
	wclosed  bool        // we sent CloseWrite or Close
	endSent  bool        // we sent Close: no frame for this stream may follow
	acked    bool        // the open was acknowledged
	answer   *answerSlot // its place in the order of answers, or nil (answer.go)
	sink     *pusher     // WriteTo or PushAsync is running: where the read loop delivers
	draining int         // WriteTo is writing this many bytes it took from rbuf or a pipe
	// queue holds, ahead of rbuf's, bytes that arrived for sink while
	// its socket was full (queue.go): in the pipes they were spliced
	// into, or in buffers rbuf filled. queued counts its bytes, npipes
	// its pipes.
	queue          []segment
	queued, npipes int
	readReady      chan struct{}
	writeReady     chan struct{}
	// What it queued for the link (Session.enqueueData), guarded by the
	// session's qmu: qgen is the take of the queue (Session.qtaken) that
	// takes its last queued frame; qsent counts the bytes it queued since
	// enqueueData last knew them taken (while the stream had the link to
	// itself) or written (while it shared it).
	qgen  uint64
	qsent int

	closeOnce sync.Once
	closed    chan struct{}
	rd, wd    *deadline.Deadline
}

func newStream(s *Session, id int64, name, addr string) *Stream {
	return &Stream{
		s:          s,
		id:         id,
		name:       name,
		addr:       addr,
		readReady:  make(chan struct{}, 1),
		writeReady: make(chan struct{}, 1),
		room:       make(chan struct{}, 1),
		closed:     make(chan struct{}),
		rd:         deadline.New(),
		wd:         deadline.New(),
	}
}

var _ net.Conn = (*Stream)(nil)

// ID returns the stream's session number on its link.
func (st *Stream) ID() int64 { return st.id }

// Name returns the name given when the stream was opened: who connects.
func (st *Stream) Name() string { return st.name }

// Addr returns the address given when the stream was opened.
func (st *Stream) Addr() string { return st.addr }

// Token returns the token given when the stream was opened.
func (st *Stream) Token() string { return st.token }

// Ext returns the further fields of the open frame that made an accepted
// stream (Frame.Ext), or nil.
func (st *Stream) Ext() any { return st.ext }

// Session returns the session the stream runs on.
func (st *Stream) Session() *Session { return st.s }

func (st *Stream) LocalAddr() net.Addr  { return st.local }
func (st *Stream) RemoteAddr() net.Addr { return st.remote }

func (st *Stream) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "rtcp", Source: st.local, Addr: st.remote, Err: err}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads what the peer sent. It returns io.EOF once the peer has closed
// (or half-closed) and everything sent has been read, and an error, never
// io.EOF, when the stream was cut off.
func (st *Stream) Read(p []byte) (int, error) {
	for {
		select {
		case <-st.closed:
			return 0, st.opErr("read", net.ErrClosed)
		default:
		}
		if st.rd.Passed() {
			return 0, st.opErr("read", errTimeout)
		}
		st.mu.Lock()
		if st.roff < len(st.rbuf) {
			n := copy(p, st.rbuf[st.roff:])
			st.roff += n
			if st.roff == len(st.rbuf) {
				if cap(st.rbuf) > 64<<10 {
					putRbuf(st.rbuf) // an idle stream holds no large buffer
					st.rbuf = nil
				} else {
					st.rbuf = st.rbuf[:0]
				}
				st.roff = 0
			}
			grant := st.consumed(n, st.roff == 0 && len(st.rbuf) == 0)
			st.mu.Unlock()
			st.grant(grant)
			return n, nil
		}
		if st.rerr != nil {
			err := st.rerr
			st.mu.Unlock()
			return 0, st.opErr("read", err)
		}
		if st.rclosed {
			st.mu.Unlock()
			return 0, io.EOF
		}
		st.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-st.readReady:
		case <-st.rd.Wait():
		case <-st.closed:
		}
	}
}

// WaitRead waits until Read will not block: bytes have arrived, or the
// end, an error, a deadline or Close. A relay calls it before it takes a
// buffer, so that an idle stream costs it none. It returns Read's error
// for the last four, nil for bytes or the end.
func (st *Stream) WaitRead() error {
	for {
		select {
		case <-st.closed:
			return st.opErr("read", net.ErrClosed)
		default:
		}
		if st.rd.Passed() {
			return st.opErr("read", errTimeout)
		}
		st.mu.Lock()
		ready := st.roff < len(st.rbuf) || len(st.queue) > 0 || st.rerr != nil || st.rclosed
		st.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-st.readReady:
		case <-st.rd.Wait():
		case <-st.closed:
		}
	}
}

// Write sends p to the peer; the caller's buffer is never kept. When the
// link is idle and the stream has no write deadline, Write writes its
// frame to the link itself; such a write in progress waits for the link to
// take it even if the stream is closed meanwhile (a link that takes
// nothing is ended by the session's keepalive or Close).
//
// The count Write returns includes every byte queued for the link (as a
// TCP socket's Write counts what its send buffer took) and every byte of
// a frame that went out, even if the write to the link that carried it
// failed (it also carried other streams' frames): the peer may read
// those. Only then does the next Write return the link's error. Of a
// frame the link took part of, it counts the bytes the peer may read (see
// Counter).
func (st *Stream) Write(p []byte) (int, error) {
	n := 0
	for {
		select {
		case <-st.closed:
			return n, st.opErr("write", net.ErrClosed)
		default:
		}
		if st.wd.Passed() {
			return n, st.opErr("write", errTimeout)
		}
		st.mu.Lock()
		if err := st.writeErrLocked(); err != nil {
			st.mu.Unlock()
			return n, st.opErr("write", err)
		}
		if n == len(p) {
			st.mu.Unlock()
			return n, nil
		}
		k := min(len(p)-n, st.s.batchSize())
		if st.s.cfg.FlowControl {
			k = min(k, st.credit)
			st.credit -= k
		}
		st.mu.Unlock()
		if k == 0 {
			select {
			case <-st.writeReady:
			case <-st.wd.Wait():
			case <-st.closed:
			case <-st.s.done:
			}
			continue
		}
		m, err := st.s.writeData(st, p[n:n+k], st.wd.Wait())
		n += m
		if err != nil {
			if st.s.cfg.FlowControl {
				st.mu.Lock()
				st.credit += k - m
				st.mu.Unlock()
			}
			return n, st.opErr("write", err)
		}
		if n == len(p) {
			// Written: a Close from the peer that comes in now (it may
			// have read these very bytes) is no failure of this Write.
			return n, nil
		}
	}
}

func (st *Stream) writeErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writeErrLocked()
}

func (st *Stream) writeErrLocked() error {
	switch {
	case st.werr != nil:
		return st.werr
	case st.endSent:
		return net.ErrClosed
	case st.wclosed:
		return ErrWriteClosed
	}
	return nil
}

// CloseWrite ends the stream's sending direction: the peer reads io.EOF
// after what was written, and can still write back.
func (st *Stream) CloseWrite() error {
	if !st.s.cfg.HalfClose {
		return st.opErr("close", ErrNoHalfClose)
	}
	select {
	case <-st.closed:
		return st.opErr("close", net.ErrClosed)
	default:
	}
	st.mu.Lock()
	if st.wclosed || st.werr != nil {
		st.mu.Unlock()
		return nil
	}
	done := st.rclosed
	st.mu.Unlock()
	st.s.enqueueStreamEnd(st, &Frame{Kind: KindCloseWrite, ID: st.id}, false)
	signal(st.writeReady) // a Write waiting for credit fails now
	if done {
		// Both directions have ended: the stream is over on both sides.
		st.s.remove(st)
		st.s.closeIfIdle()
	}
	return nil
}

// Close closes the stream in both directions and unblocks every call.
func (st *Stream) Close() error {
	return st.close(&Frame{Kind: KindClose, ID: st.id})
}

// Abort closes the stream and tells the peer it was cut off by err: the
// peer's reads fail with err's text rather than io.EOF.
func (st *Stream) Abort(err error) {
	st.close(&Frame{Kind: KindClose, ID: st.id, Reason: err.Error(), Abort: true})
}

func (st *Stream) close(f *Frame) error {
	first := false
	st.closeOnce.Do(func() {
		first = true
		close(st.closed)
		st.rd.Stop()
		st.wd.Stop()
		if !st.s.remove(st) {
			st.unanswered(f.Reason) // the peer closed it: its slot is still owed
			return                  // the peer closed it, or the link is gone
		}
		st.mu.Lock()
		acked := st.acked
		st.acked = true
		st.mu.Unlock()
		if !acked {
			// Closing a stream that was never acknowledged refuses it.
			reason := f.Reason
			if reason == "" {
				reason = "rtcp: refused"
			}
			if st.s.sem.OpenerAssignsID {
				st.s.enqueue(&Frame{Kind: KindClose, ID: st.id, Reason: reason, Abort: true})
			} else {
				st.s.answer(st.answer, &Frame{Kind: KindAck, ID: -1, Reason: reason}, nil)
			}
		} else {
			st.s.enqueueStreamEnd(st, f, true)
		}
		st.s.closeIfIdle()
	})
	if !first {
		return nil
	}
	st.mu.Lock()
	st.rbuf = nil
	st.releaseQueueLocked()
	restart := st.unparkLocked() // PushAsync's ends with net.ErrClosed
	st.mu.Unlock()
	st.restart(restart)
	return nil
}

// Ack answers an open that Accept returned under Config.ManualAck: nil
// accepts the stream, an error refuses it with the error's text.
func (st *Stream) Ack(err error) error {
	st.mu.Lock()
	if st.acked {
		st.mu.Unlock()
		return errors.New("rtcp: stream already acknowledged")
	}
	st.acked = true
	st.mu.Unlock()
	if err != nil {
		st.closeOnce.Do(func() { close(st.closed) })
		st.unpark() // PushAsync's ends with net.ErrClosed: a Close now does nothing
		st.s.remove(st)
		if st.s.sem.OpenerAssignsID {
			st.s.enqueue(&Frame{Kind: KindClose, ID: st.id, Reason: err.Error(), Abort: true})
		} else {
			st.s.answer(st.answer, &Frame{Kind: KindAck, ID: -1, Reason: err.Error()}, nil)
		}
		st.s.closeIfIdle()
		return nil
	}
	grant := func() { st.s.grantInitial(st.id) }
	if !st.s.sem.OpenerAssignsID || st.s.sem.AckOpens {
		if !st.s.answer(st.answer, &Frame{Kind: KindAck, ID: st.id}, grant) {
			return st.s.errOr(net.ErrClosed)
		}
		// An Ack that waits its turn must leave before anything the
		// stream sends after it.
		st.s.waitSent(st.answer)
		return nil
	}
	grant()
	return nil
}

func (st *Stream) SetDeadline(t time.Time) error {
	st.rd.Set(t)
	st.wd.Set(t)
	st.readable() // PushAsync's waits for the deadline, or parks without one
	return nil
}

func (st *Stream) SetReadDeadline(t time.Time) error {
	st.rd.Set(t)
	st.readable()
	return nil
}

func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.wd.Set(t)
	return nil
}

// push appends data from the peer. Called by the read loop; never blocks.
func (st *Stream) push(data []byte) {
	st.mu.Lock()
	if st.rclosed || st.rerr != nil {
		st.mu.Unlock()
		return
	}
	select {
	case <-st.closed:
		st.mu.Unlock()
		return
	default:
	}
	if st.received(len(data)) {
		st.mu.Unlock()
		st.s.cut(st, &CutError{Msg: "rtcp: the peer sent more than the flow-control window allows"})
		return
	}
	var grant, delivered int
	if st.sink != nil {
		sink := st.sink
		data, delivered, grant = st.deliver(data)
		failed := sink.err != nil
		if len(data) == 0 || failed {
			var restart *pusher
			if failed {
				restart = st.unparkLocked()
			}
			st.mu.Unlock()
			sink.countDelivered(delivered)
			st.grant(grant)
			if failed {
				signal(st.readReady) // WriteTo has an error to return
				st.restart(restart)
			}
			return
		}
	}
	if st.roff > 0 && st.roff == len(st.rbuf) {
		st.rbuf, st.roff = st.rbuf[:0], 0
	} else if st.queueingLocked() && cap(st.rbuf)-len(st.rbuf) < len(data) && len(st.rbuf)-st.roff >= bigRbuf {
		// A burst for a destination that is full: the full buffer
		// waits in the queue, and the bytes go to a new one, so no
		// byte is copied twice.
		st.queueRbufLocked()
	} else if st.roff > 0 && cap(st.rbuf)-len(st.rbuf) < len(data) {
		// Compact rather than grow.
		n := copy(st.rbuf, st.rbuf[st.roff:])
		st.rbuf, st.roff = st.rbuf[:n], 0
	}
	bound := st.s.cfg.MaxBuffer
	if st.s.cfg.FlowControl {
		bound = st.win
	}
	if need := len(st.rbuf) + len(data); need > cap(st.rbuf) && need > 16<<10 && bound >= bigRbuf {
		// A burst: one pooled buffer, not a chain of growing ones (a
		// stream with a smaller bound grows its buffer as it needs).
		// Only the frame that fills a stream without flow control takes
		// it past its bound: a buffer made to measure, not the next class
		// up (a stalled stream would hold twice what it needs).
		old := st.rbuf
		var b []byte
		if need <= bound {
			b = getRbuf(need)
		} else {
			b = make([]byte, 0, need)
		}
		st.rbuf = append(b, st.rbuf[st.roff:]...)
		st.roff = 0
		putRbuf(old)
	}
	st.rbuf = append(st.rbuf, data...)
	if !st.s.cfg.FlowControl && st.bufferedLocked() >= st.s.cfg.MaxBuffer {
		st.s.full = st // push runs on the read loop: it waits for room
	}
	sink := st.sink
	restart := st.unparkLocked()
	st.mu.Unlock()
	if sink != nil {
		sink.countDelivered(delivered)
	}
	st.grant(grant)
	signal(st.readReady)
	st.restart(restart)
}

// Receive buffers come in size classes, bigRbuf (the default window and
// MaxBuffer) doubling to rbufClasses' last: a stream that receives a burst
// takes one from its class's pool, the smallest that holds the burst, and
// gives it back once its reader has drained it. Without the pools every
// burst allocated a chain of growing buffers (a third of a relay's CPU
// went to the garbage collector and to returning memory to the OS); with
// one pool of the largest size, every stalled reader whose window had
// grown a little held a buffer of the largest size.
const (
	bigRbuf     = 256 << 10
	rbufClasses = 7 // 256 KiB .. 16 MiB: larger bursts are rare, and a pooled one is memory no budget counts
)

// rbufPools[i] holds buffers of cap bigRbuf<<i.
var rbufPools [rbufClasses]sync.Pool

// rbufClass returns the class of the smallest pooled buffer that holds n
// bytes, or -1 if none does.
func rbufClass(n int) int {
	for i := range rbufClasses {
		if n <= bigRbuf<<i {
			return i
		}
	}
	return -1
}

// getRbuf returns an empty buffer with room for need bytes.
func getRbuf(need int) []byte {
	i := rbufClass(need)
	if i < 0 {
		return make([]byte, 0, need)
	}
	if b, ok := rbufPools[i].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, bigRbuf<<i)
}

// putRbuf gives b back to its pool, if it came from one.
func putRbuf(b []byte) {
	if i := rbufClass(cap(b)); i >= 0 && cap(b) == bigRbuf<<i {
		rbufPools[i].Put(&b)
	}
}

// maxCredit is the most credit a stream keeps (addCredit): more than a
// Write can spend before the peer grants again, yet far enough below an
// int's limit that Write's give-back (credit += k - m) cannot pass it. On
// 32-bit systems it is 1 GiB, where a yamux window may be 4 GiB: of a
// peer's grants past it this side spends none, and waits for the grants
// the peer sends as it reads what was spent.
const maxCredit = math.MaxInt / 2

func (st *Stream) addCredit(n int) {
	st.mu.Lock()
	// Saturating: grants that add up past maxCredit (a peer's word) must
	// not wrap credit below zero, which Write would slice p with.
	st.credit = min(st.credit, maxCredit-n) + n
	st.mu.Unlock()
	signal(st.writeReady)
}

func (st *Stream) peerCloseWrite() {
	st.mu.Lock()
	st.rclosed = true
	done := st.wclosed
	st.mu.Unlock()
	st.readable()
	if done {
		st.s.remove(st)
		st.s.readerCloseIfIdle() // on the read loop
	}
}

// peerClose handles the peer's Close (the stream is already forgotten).
func (st *Stream) peerClose(reason string, abort bool) {
	st.releaseWindow()
	st.mu.Lock()
	if abort {
		if reason == "" {
			reason = "rtcp: session aborted by the peer"
		}
		st.rerr = &AbortError{Reason: reason}
		st.werr = st.rerr
		st.giveUpLocked()
	} else {
		st.rclosed = true
		st.werr = ErrPeerClosed
	}
	st.mu.Unlock()
	st.readable()
	signal(st.writeReady)
}

// linkDown cuts the stream off because its link ended with err.
func (st *Stream) linkDown(err error) {
	st.releaseWindow()
	st.mu.Lock()
	if st.rerr == nil && !st.rclosed {
		st.rerr = err
		st.giveUpLocked()
	}
	if st.werr == nil || st.werr == ErrPeerClosed {
		st.werr = err
	}
	st.mu.Unlock()
	st.readable()
	signal(st.writeReady)
}

// AbortError is the peer's report that a stream was cut off.
type AbortError struct{ Reason string }

func (e *AbortError) Error() string { return e.Reason }

// SetAddrs sets what LocalAddr and RemoteAddr return, for a wire that
// learns them after the open (rtcp's yamux transport reads them from a
// Connect inside the stream). Call it before handing the stream out.
func (st *Stream) SetAddrs(local, remote net.Addr) {
	st.local, st.remote = local, remote
}
