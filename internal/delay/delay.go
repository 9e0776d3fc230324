// Package delay is a TCP relay that adds a round trip without limiting
// bandwidth: a wide-area link on loopback, where the kernel may have no
// netem. Every byte is held for half the round trip in each direction;
// TCP on either side still sees loopback, so only windows kept above TCP
// (a multiplexer's, a protocol's credit) meet the delay.
//
// The link is modelled as one that carries data with its SYN: the relay
// dials onward as soon as it accepts, the client's bytes reach the far
// side RTT/2 after they were read (or as the dial returns, if that is
// later: a slow dial delays them as a slow server would), and nothing from
// the far side reaches the client sooner than one RTT after its connect
// (its SYN there and the answer back), so a connect and the server's first
// byte back take one round trip, and so does a byte there and back. The
// far side sees the connection (and Relay.Header) at once, RTT/2 before a
// SYN would have come, but what it sends back still reaches the client no
// sooner than one RTT after the connect.
//
// Each direction of a connection is a reader that reads chunks as they
// come, stamps each with the time it may leave (RTT/2 after the kernel
// received it, on Linux by its receive timestamp, SO_TIMESTAMPNS:
// stamp_linux.go; elsewhere after the read) and queues it, and a writer
// that writes each chunk when its time comes. The queue holds up
// to a bandwidth-delay product (Relay.MaxQueue); past it the reader stops
// and TCP pushes back on the sender. The writer waits on a Go timer until
// the last 2 ms before a chunk is due, and on Linux the rest on a timerfd
// (clock_linux.go): Go's timers fire up to a millisecond late, which at
// a round trip of 2 ms made each crossing take half as long again. It
// writes to connections other than TCP on timers alone, so that in a
// testing/synctest bubble (in-memory connections) the fake clock holds.
package delay

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"rtcp/internal/tcpreset"
)

// A Relay accepts connections and joins each, through the delay, to a
// connection of its own to To. With To set, the zero value is a plain
// relay.
type Relay struct {
	// To is the address each accepted connection is relayed to.
	To string

	// RTT is the round trip the relay adds: bytes are held RTT/2 in each
	// direction, and those from To no less than RTT after the accept (a
	// dial and the server's first byte back take one RTT, as over a link
	// that carries data with its SYN; the dial to To is made at once). A
	// half-close is carried after the bytes before it, and so is a reset,
	// which closes both sides; a dial that fails is a reset RTT after the
	// accept (or as it fails, if later), and a write that fails (the end
	// beyond it gone) a reset back RTT/2 later, after what that end sent
	// before. Zero makes a plain relay: io.Copy both ways (spliced on
	// Linux), half-close passed on.
	RTT time.Duration

	// MaxQueue bounds the bytes held per direction of a connection;
	// there the relay stops reading until the writer has made room. It
	// caps a connection at MaxQueue/(RTT/2) bytes per second. Zero means
	// the larger of 64 MiB and RTT/2 at 4 GB/s, more than loopback
	// carries.
	MaxQueue int

	// Dial opens the connection to To. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Header, if set, returns bytes to write on the connection to To
	// before any byte relayed from the accepted connection, as a load
	// balancer in front of a server writes a PROXY protocol header that
	// names the client (the accepted connection's RemoteAddr). They
	// are written as the dial returns, before any relayed byte, not
	// RTT/2 after the accept (the far side learns of the client RTT/2
	// early; its answer still reaches the client RTT after the connect).
	Header func(accepted net.Conn) []byte

	mu        sync.Mutex // guards listeners and closed
	listeners map[net.Listener]struct{}
	closed    bool
	serving   sync.WaitGroup // Serve calls running

	bufs sync.Pool // *[]byte of readSize; empty: allocate
	peak peakBytes // the most one direction has held (for tests)
}

// readSize is the most read at once. A read that fills less than half of
// it is copied out, so a queue's memory is at most twice its bytes.
const readSize = 256 << 10

// MaxQueue's floor, and the rate whose bandwidth-delay product it grows
// to.
const (
	minMaxQueue = 64 << 20
	maxRate     = 4e9 // bytes per second
)

func (r *Relay) maxQueue() int {
	if r.MaxQueue > 0 {
		return r.MaxQueue
	}
	return max(minMaxQueue, int(maxRate*(r.RTT/2).Seconds()))
}

// Serve accepts connections on l and relays each until l fails or the
// relay is closed. Before it returns it closes its connections and waits
// for their goroutines. After Close it returns net.ErrClosed.
func (r *Relay) Serve(l net.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	if r.listeners == nil {
		r.listeners = make(map[net.Listener]struct{})
	}
	r.listeners[l] = struct{}{}
	r.serving.Add(1)
	r.mu.Unlock()
	defer r.serving.Done()
	defer func() {
		r.mu.Lock()
		delete(r.listeners, l)
		r.mu.Unlock()
	}()
	stampListener(l) // a client's first bytes may come before its link reads

	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards links
		links = make(map[*link]struct{})
	)
	defer func() {
		cancel()
		mu.Lock()
		for k := range links {
			k.abort(false)
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return net.ErrClosed
			}
			return err
		}
		k := r.newLink(ctx, c, time.Now())
		mu.Lock()
		links[k] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			k.run()
			mu.Lock()
			delete(links, k)
			mu.Unlock()
		})
	}
}

// Close stops every Serve: their listeners and connections are closed,
// and Close returns when their goroutines have ended.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for l := range r.listeners {
		l.Close()
	}
	r.mu.Unlock()
	r.serving.Wait()
	return nil
}

func (r *Relay) getBuf() *[]byte {
	if bp, ok := r.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, readSize)
	return &b
}

func (r *Relay) putBuf(bp *[]byte) { r.bufs.Put(bp) }

// peakBytes is the most bytes one direction of a link has held at once.
type peakBytes struct{ n atomic.Int64 }

func (p *peakBytes) note(n int) {
	for {
		old := p.n.Load()
		if int64(n) <= old || p.n.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

func (p *peakBytes) get() int { return int(p.n.Load()) }

// A link is an accepted connection a, the connection b dialed for it, and
// the two directions between them.
type link struct {
	r        *Relay
	a        net.Conn
	accepted time.Time       // when Accept returned a: the client's connect
	ctx      context.Context // ends the dial
	cancel   context.CancelFunc
	done     chan struct{} // closed by abort: every goroutine of the link ends

	mu      sync.Mutex // guards b and aborted
	b       net.Conn
	aborted bool
}

func (r *Relay) newLink(ctx context.Context, a net.Conn, accepted time.Time) *link {
	ctx, cancel := context.WithCancel(ctx)
	return &link{r: r, a: a, accepted: accepted, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// abort ends the link at once: both connections are closed, with a reset
// if reset is set (a peer reset, or an error).
func (k *link) abort(reset bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aborted {
		return
	}
	k.aborted = true
	close(k.done)
	k.cancel()
	for _, c := range []net.Conn{k.a, k.b} {
		if c == nil {
			continue
		}
		if reset {
			tcpreset.SetReset(tcpreset.Of(c), true)
		}
		c.Close()
	}
}

// setB records the dialed connection; false if the link was aborted
// meanwhile (b is then closed).
func (k *link) setB(b net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.aborted {
		b.Close()
		return false
	}
	k.b = b
	return true
}

func (k *link) dial() (net.Conn, error) {
	dial := k.r.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(k.ctx, "tcp", k.r.To)
	if err != nil || k.r.Header == nil {
		return c, err
	}
	if h := k.r.Header(k.a); len(h) > 0 {
		if _, err := c.Write(h); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// run relays until both directions have ended, then closes both
// connections.
func (k *link) run() {
	defer k.abort(false)
	if k.r.RTT <= 0 {
		k.plain()
		return
	}
	ab := k.newPipe(k.a, time.Time{})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(ab.read)

	b, err := k.dial()
	if err != nil {
		// The refusal crosses back as the answer to the SYN would.
		t := time.NewTimer(time.Until(k.accepted.Add(k.r.RTT)))
		defer t.Stop()
		select {
		case <-t.C:
			k.abort(true)
		case <-k.done:
		}
		return
	}
	if !k.setB(b) {
		return
	}
	ba := k.newPipe(b, k.accepted.Add(k.r.RTT))
	ab.dst, ba.dst = b, k.a
	ab.back, ba.back = ba, ab
	wg.Go(ab.write)
	wg.Go(ba.read)
	wg.Go(ba.write)
}

// plain relays without delay, as the reference relay of the bench does.
func (k *link) plain() {
	b, err := k.dial()
	if err != nil || !k.setB(b) {
		k.abort(true)
		return
	}
	pass := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil {
			k.abort(true)
			return
		}
		closeWrite(dst)
	}
	var wg sync.WaitGroup
	wg.Go(func() { pass(b, k.a) })
	pass(k.a, b)
	wg.Wait()
}

// closeWrite half-closes c, or closes it if it cannot half-close.
func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
		return
	}
	c.Close()
}

// A chunk is bytes read at once, held until at. The last chunk of a
// direction has no bytes and end set: io.EOF, or the read's error.
type chunk struct {
	at   time.Time
	buf  *[]byte // the pooled buffer data is in; nil if data is its own
	data []byte
	end  error
}

// A pipe is one direction of a link: src is read into the queue, and the
// queue written to dst (dst and back set before write starts).
type pipe struct {
	k     *link
	src   net.Conn
	dst   net.Conn
	back  *pipe     // the other direction: src is its dst
	raw   rawReader // reads src without a buffer while idle; nil: src.Read
	half  time.Duration
	first time.Time // no chunk leaves before (zero: no such bound)
	max   int

	ready chan struct{} // 1-buffered: a chunk was queued, or resetAt set
	room  chan struct{} // 1-buffered: bytes left the queue

	// mu guards queue, queued, resetAt and stopped; no other lock is
	// taken while it is held (gone takes the other direction's alone).
	mu     sync.Mutex
	queue  []chunk
	queued int // bytes in queue and being written
	// resetAt, if set, is when the writer resets dst, after the chunks
	// due by then: a write the other way failed (see gone).
	resetAt time.Time
	stopped bool // the writer has ended; it carries no resetAt set after
}

// newPipe returns the direction that reads src, whose chunks leave RTT/2
// after they were read and not before first.
func (k *link) newPipe(src net.Conn, first time.Time) *pipe {
	return &pipe{
		k: k, src: src, raw: newRawReader(src),
		half: k.r.RTT / 2, first: first, max: k.r.maxQueue(),
		ready: make(chan struct{}, 1), room: make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// read queues what src gives until its end or an error.
func (p *pipe) read() {
	for {
		if !p.waitRoom() {
			return
		}
		bp, n, arrived, err := p.readChunk()
		at := due(time.Now(), arrived, p.half)
		if at.Before(p.first) {
			at = p.first
		}
		if n > 0 {
			c := chunk{at: at, buf: bp, data: (*bp)[:n]}
			if n < readSize/2 {
				c.data = append([]byte(nil), c.data...)
				c.buf = nil
				p.k.r.putBuf(bp)
			}
			p.push(c)
		} else if bp != nil {
			p.k.r.putBuf(bp)
		}
		if err != nil {
			p.push(chunk{at: at, end: err})
			return
		}
	}
}

// readChunk reads from src into a pooled buffer, and says when the bytes
// reached this host, if it can tell (stamp_linux.go; zero: it cannot).
func (p *pipe) readChunk() (*[]byte, int, time.Time, error) {
	if p.raw != nil {
		return p.raw.read(p.k.r.getBuf, p.k.r.putBuf)
	}
	bp := p.k.r.getBuf()
	n, err := p.src.Read(*bp)
	return bp, n, time.Time{}, err
}

// due returns when bytes read at now leave: half after they arrived, as
// the kernel stamped them (arrived; zero: not known, now), and no sooner
// than now. The reader's wake-up on a busy machine is the relay's own
// delay, not the link's: stamped at the read, bytes that waited for it
// (while the peers ran on the same cores) left that much later again.
// The wall clock that arrived is on stepping meanwhile moves a chunk by
// half at most.
func due(now, arrived time.Time, half time.Duration) time.Time {
	at := now.Add(half)
	if arrived.IsZero() {
		return at
	}
	waited := now.Round(0).Sub(arrived) // both on the wall clock
	return at.Add(-min(max(waited, 0), half))
}

// waitRoom waits until the queue is below its bound; false if the link
// ended.
func (p *pipe) waitRoom() bool {
	for {
		p.mu.Lock()
		full := p.queued >= p.max
		p.mu.Unlock()
		if !full {
			return true
		}
		select {
		case <-p.room:
		case <-p.k.done:
			return false
		}
	}
}

func (p *pipe) push(c chunk) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.queued += len(c.data)
	queued := p.queued
	p.mu.Unlock()
	p.k.r.peak.note(queued)
	signal(p.ready)
}

// write writes each chunk to dst when its time comes, and carries the
// end: a half-close after EOF, an abort (with a reset) after an error.
// A write that fails carries a reset back (gone).
func (p *pipe) write() {
	w := p.newWaiter()
	defer w.close()
	for {
		at, reset, ok := p.waitHead()
		if !ok {
			return
		}
		if !w.until(at) {
			return
		}
		if reset {
			p.k.abort(true)
			return
		}
		batch := p.takeDue(time.Now())
		var (
			bufs net.Buffers
			n    int
			end  error
		)
		for _, c := range batch {
			bufs = append(bufs, c.data)
			n += len(c.data)
			end = c.end
		}
		_, err := bufs.WriteTo(p.dst)
		for _, c := range batch {
			if c.buf != nil {
				p.k.r.putBuf(c.buf)
			}
		}
		if err != nil {
			p.stop(w, p.gone())
			return
		}
		p.release(n)
		switch {
		case errors.Is(end, io.EOF):
			closeWrite(p.dst)
			p.stop(w, time.Time{})
			return
		case end != nil:
			p.k.abort(true)
			return
		}
	}
}

// preciseSpan is the last stretch before a chunk is due that a writer
// waits on its clock, not on a Go timer: longer than a timer can be late
// on an idle runtime (1 ms, and the truncation of longer waits to whole
// milliseconds).
const preciseSpan = 2 * time.Millisecond

// A waiter waits for the times chunks are due: on a Go timer, which
// the link's end interrupts, until preciseSpan before, then on a clock
// (made at the first wait that needs it; nil: none could be, or dst is
// no TCP connection, as in a synctest bubble, whose fake clock only Go's
// timers follow: in-memory connections wait on timers alone).
type waiter struct {
	p       *pipe
	t       *time.Timer
	c       *clock
	noClock bool // no clock to make: timers only
}

func (p *pipe) newWaiter() *waiter {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{p: p, t: t, noClock: tcpreset.Under(p.dst) == nil}
}

// until returns at at; false if the link ended first. The last
// preciseSpan is not interrupted.
func (w *waiter) until(at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	if w.c == nil && !w.noClock {
		var err error
		if w.c, err = newClock(); err != nil {
			w.noClock = true // timers only: late, but on time enough
		}
	}
	coarse := d
	if w.c != nil {
		coarse -= preciseSpan
	}
	if coarse > 0 {
		w.t.Reset(coarse)
		select {
		case <-w.t.C:
		case <-w.p.k.done:
			w.t.Stop()
			return false
		}
	}
	if w.c != nil {
		if err := w.c.sleep(time.Until(at)); err != nil {
			w.c.close()
			w.c, w.noClock = nil, true
			return w.until(at)
		}
	}
	return true
}

func (w *waiter) close() {
	if w.c != nil {
		w.c.close()
	}
}

// gone is called by the writer when a write to dst failed: the end
// beyond dst is gone, and its reset crosses back as it would on a link,
// RTT/2 from now and after the bytes it sent before (which the other
// direction may still hold). The other direction's writer carries it;
// gone returns when to reset if that writer has ended, else zero.
func (p *pipe) gone() time.Time {
	select {
	case <-p.k.done: // the link's own abort closed dst
		return time.Time{}
	default:
	}
	q := p.back
	at := time.Now().Add(p.half)
	if at.Before(q.first) {
		at = q.first
	}
	q.mu.Lock()
	stopped := q.stopped
	if !stopped && (q.resetAt.IsZero() || at.Before(q.resetAt)) {
		q.resetAt = at
	}
	q.mu.Unlock()
	if stopped {
		return at
	}
	signal(q.ready)
	return time.Time{}
}

// stop ends the writer short of an abort (after a half-close, or a
// failed write): a reset the other direction set for it is still
// carried, at its time, or at, if that is set and sooner.
func (p *pipe) stop(w *waiter, at time.Time) {
	p.mu.Lock()
	p.stopped = true
	if r := p.resetAt; !r.IsZero() && (at.IsZero() || r.Before(at)) {
		at = r
	}
	p.mu.Unlock()
	if !at.IsZero() && w.until(at) {
		p.k.abort(true)
	}
}

// waitHead waits for a chunk or a reset to carry and returns when it is
// due, and whether it is the reset (resetAt, sooner than any chunk);
// false if the link ended.
func (p *pipe) waitHead() (at time.Time, reset, ok bool) {
	for {
		p.mu.Lock()
		at, reset = p.resetAt, !p.resetAt.IsZero()
		if len(p.queue) > 0 && (!reset || !p.queue[0].at.After(at)) {
			at, reset = p.queue[0].at, false
		}
		p.mu.Unlock()
		if !at.IsZero() {
			return at, reset, true
		}
		select {
		case <-p.ready:
		case <-p.k.done:
			return time.Time{}, false, false
		}
	}
}

// maxBatch bounds the bytes one write takes from the queue, so that room
// is made as it goes.
const maxBatch = 4 << 20

// takeDue takes the chunks due by now off the queue: at least one, up to
// maxBatch bytes, and none after an end or due after resetAt.
func (p *pipe) takeDue(now time.Time) []chunk {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.resetAt.IsZero() && p.resetAt.Before(now) {
		now = p.resetAt
	}
	n, size := 0, 0
	for n < len(p.queue) && (n == 0 || !p.queue[n].at.After(now) && size < maxBatch) {
		size += len(p.queue[n].data)
		n++
		if p.queue[n-1].end != nil {
			break
		}
	}
	batch := make([]chunk, n)
	copy(batch, p.queue)
	clear(p.queue[:n])
	p.queue = p.queue[n:]
	return batch
}

// release counts n written bytes out of the queue.
func (p *pipe) release(n int) {
	p.mu.Lock()
	p.queued -= n
	p.mu.Unlock()
	signal(p.room)
}
