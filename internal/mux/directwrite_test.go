package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"rtcp/internal/flowtest"
)

// Tests of Session.writeData: a Stream.Write that finds the link idle
// writes its Data frame itself, from the caller's buffer; otherwise it
// queues a copy for the write loop.

// wireChecker wraps a session's Framer and checks what the session writes
// through it: that no two goroutines write at once, and that no Data
// follows a stream's CloseWrite or Close. It counts the Data frames
// written straight from a writer's buffer (the direct path: their bytes
// lie inside one of srcs) and the others (a queued copy).
type wireChecker struct {
	Framer
	srcs [][]byte // the buffers the test's writers write from; read-only

	busy           atomic.Bool
	overlaps       atomic.Int64
	direct, queued atomic.Int64

	mu    sync.Mutex
	ended map[int64]Kind
	late  []string
}

func newWireChecker(fr Framer, srcs ...[]byte) *wireChecker {
	return &wireChecker{Framer: fr, srcs: srcs, ended: make(map[int64]Kind)}
}

func (w *wireChecker) enter() {
	if !w.busy.CompareAndSwap(false, true) {
		w.overlaps.Add(1)
	}
}

func (w *wireChecker) leave() { w.busy.Store(false) }

func (w *wireChecker) WriteFrame(f *Frame) error {
	w.enter()
	defer w.leave()
	w.mu.Lock()
	switch {
	case f.Kind == KindData && len(f.Data) > 0:
		if k, ok := w.ended[f.ID]; ok {
			w.late = append(w.late, fmt.Sprintf("%d bytes of Data for stream %d after its %v", len(f.Data), f.ID, k))
		}
		if w.fromSource(f.Data) {
			w.direct.Add(1)
		} else {
			w.queued.Add(1)
		}
	case (f.Kind == KindCloseWrite || f.Kind == KindClose) && f.ID >= 0:
		if _, ok := w.ended[f.ID]; !ok {
			w.ended[f.ID] = f.Kind
		}
	}
	w.mu.Unlock()
	return w.Framer.WriteFrame(f)
}

func (w *wireChecker) Flush() error {
	w.enter()
	defer w.leave()
	return w.Framer.Flush()
}

// Counts is the Framer's, which must be a Counter.
func (w *wireChecker) Counts() (produced, written int64) {
	w.enter()
	defer w.leave()
	return w.Framer.(interface{ Counts() (int64, int64) }).Counts()
}

// fromSource reports whether p lies inside one of the writers' buffers.
func (w *wireChecker) fromSource(p []byte) bool {
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	for _, src := range w.srcs {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(src)))
		if at >= start && at < start+uintptr(len(src)) {
			return true
		}
	}
	return false
}

func (w *wireChecker) check(t *testing.T, side string) {
	t.Helper()
	if n := w.overlaps.Load(); n > 0 {
		t.Errorf("%s: %d times two goroutines wrote to the Framer at once", side, n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.late {
		t.Errorf("%s: %s", side, l)
	}
}

// lazyFramer is a binFramer that keeps the frames WriteFrame is given,
// Data and all, and encodes them only in Flush, as a Framer may: a session
// that reused a frame's buffer before Flush would send other bytes. It
// counts a frame as produced when it is given one.
type lazyFramer struct {
	*binFramer
	held     []Frame
	produced int64
}

func (fr *lazyFramer) WriteFrame(f *Frame) error {
	fr.held = append(fr.held, *f)
	fr.produced += binSize(f)
	return nil
}

func (fr *lazyFramer) Counts() (produced, written int64) {
	_, written = fr.binFramer.Counts()
	return fr.produced, written
}

func (fr *lazyFramer) Flush() error {
	held := fr.held
	fr.held = fr.held[:0]
	for i := range held {
		err := fr.binFramer.WriteFrame(&held[i])
		held[i] = Frame{}
		if err != nil {
			clear(held[i:])
			return err
		}
	}
	return fr.binFramer.Flush()
}

// checkedLink is a link over loopback TCP whose sessions write through
// wireCheckers over lazyFramers.
func checkedLink(t *testing.T, cfgA, cfgB Config, srcs ...[]byte) (*link, *wireChecker, *wireChecker) {
	t.Helper()
	ca, cb := flowtest.TCPPair(t)
	wa := newWireChecker(&lazyFramer{binFramer: newBinFramer(ca)}, srcs...)
	wb := newWireChecker(&lazyFramer{binFramer: newBinFramer(cb)}, srcs...)
	return &link{a: New(ca, wa, cfgA), b: New(cb, wb, cfgB), ca: ca, cb: cb}, wa, wb
}

// writeThroughScratch writes data to w as writeRandomSizes does, but each
// piece from scratch, which it scribbles over as soon as Write returns: a
// session that kept the caller's buffer after Write would send the
// scribbles.
func writeThroughScratch(w io.Writer, data []byte, seed uint64, scratch []byte) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	for len(data) > 0 {
		k := min(len(data), 1+rng.IntN(len(scratch)))
		copy(scratch, data[:k])
		n, err := w.Write(scratch[:k])
		for i := range scratch[:k] {
			scratch[i] = 0xA5
		}
		data = data[n:]
		if err != nil {
			return err
		}
		if n != k {
			return io.ErrShortWrite
		}
	}
	return nil
}

type hashResult struct {
	sum [32]byte
	n   int64
	err error
}

// readHash reads r to its end and hashes what it read.
func readHash(r io.Reader) hashResult {
	h := sha256.New()
	n, err := io.Copy(h, struct{ io.Reader }{r}) // not WriteTo: plain Reads
	var res hashResult
	copy(res.sum[:], h.Sum(nil))
	res.n = n
	res.err = err
	if err == nil {
		res.err = io.EOF // io.Copy turns the end into nil
	}
	return res
}

// TestDirectWriteConcurrentStreams writes many streams of one
// flow-controlled session at once, each followed by its CloseWrite, while
// the peer writes back: every stream arrives intact and then io.EOF, no
// Data ever follows a stream's end on the wire, the Framer is never used by
// two goroutines at once, and both the direct and the queued path ran.
func TestDirectWriteConcurrentStreams(t *testing.T) {
	for _, tc := range []struct {
		name          string
		window        int
		keepAlive     time.Duration // on side a: frames queued between direct writes
		streams       int
		there, back   int
		wantBothPaths bool
	}{
		{"window 256K", 256 << 10, time.Millisecond, 8, 4 << 20, 256 << 10, true},
		{"window 16K", 16 << 10, 0, 8, 256 << 10, 256 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			there := make([][]byte, tc.streams)
			back := make([][]byte, tc.streams)
			scratch := make([][]byte, 2*tc.streams) // what the writers write from
			for i := range there {
				there[i] = randomBytes(uint64(100+i), tc.there)
				back[i] = randomBytes(uint64(200+i), tc.back)
			}
			for i := range scratch {
				scratch[i] = make([]byte, 64<<10)
			}
			cfgA := flowConfig(tc.window)
			cfgA.KeepAlive = tc.keepAlive
			l, wa, wb := checkedLink(t, cfgA, flowConfig(tc.window), scratch...)
			defer l.close()

			type end struct{ x, y *Stream }
			ends := make([]end, tc.streams)
			for i := range ends {
				ends[i].x, ends[i].y = l.open(t)
			}
			var wg sync.WaitGroup
			writeErrs := make([]error, 2*tc.streams)
			gotThere := make([]hashResult, tc.streams)
			gotBack := make([]hashResult, tc.streams)
			for i, e := range ends {
				wg.Add(4)
				go func() {
					defer wg.Done()
					err := writeThroughScratch(e.x, there[i], uint64(i), scratch[2*i])
					if err == nil {
						err = e.x.CloseWrite()
					}
					writeErrs[2*i] = err
				}()
				go func() {
					defer wg.Done()
					err := writeThroughScratch(e.y, back[i], uint64(50+i), scratch[2*i+1])
					if err == nil {
						err = e.y.CloseWrite()
					}
					writeErrs[2*i+1] = err
				}()
				go func() { defer wg.Done(); gotThere[i] = readHash(e.y) }()
				go func() { defer wg.Done(); gotBack[i] = readHash(e.x) }()
			}
			wg.Wait()
			for i, e := range ends {
				for k, err := range writeErrs[2*i : 2*i+2] {
					if err != nil {
						t.Errorf("stream %d: writer %d: %v", i, k, err)
					}
				}
				for _, c := range []struct {
					dir  string
					got  hashResult
					want []byte
				}{{"there", gotThere[i], there[i]}, {"back", gotBack[i], back[i]}} {
					if c.got.err != io.EOF || c.got.n != int64(len(c.want)) || c.got.sum != sha256.Sum256(c.want) {
						t.Errorf("stream %d %s: read %d bytes then %v, SHA-256 equal: %v; want %d bytes then io.EOF",
							i, c.dir, c.got.n, c.got.err, c.got.sum == sha256.Sum256(c.want), len(c.want))
					}
				}
				e.x.Close()
				e.y.Close()
			}
			wa.check(t, "a")
			wb.check(t, "b")
			t.Logf("a wrote %d Data frames directly and %d queued; b %d and %d",
				wa.direct.Load(), wa.queued.Load(), wb.direct.Load(), wb.queued.Load())
			if wa.direct.Load() == 0 {
				t.Error("no Data frame of a's was written by its writer: the direct path did not run")
			}
			if tc.wantBothPaths && wa.queued.Load() == 0 {
				t.Error("no Data frame of a's was queued: the queued path did not run")
			}
		})
	}
}

// hangBound bounds a wait that only a hang would make long.
const hangBound = time.Minute

func waitOrHang(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(hangBound):
		t.Fatalf("%s did not return within %v: a hang", what, hangBound)
	}
}

// readPattern reads r until an error, checking each byte against pattern;
// bad is the offset of the first wrong byte, or -1.
func readPattern(r io.Reader) (n int64, err error, bad int64) {
	buf := make([]byte, 32<<10)
	bad = -1
	for {
		k, rerr := r.Read(buf)
		for i := range k {
			if bad < 0 && buf[i] != pattern(n+int64(i)) {
				bad = n + int64(i)
			}
		}
		n += int64(k)
		if rerr != nil {
			return n, rerr, bad
		}
	}
}

// TestDirectWriteRacesClose ends a session, its link or its streams while
// their writers are writing (directly or through the queue): nothing
// panics or hangs, every writer returns an error, every reader ends, and
// what arrives is an intact prefix of what was written; where the end is a
// stream's own (Close, CloseWrite), exactly the bytes its Writes accepted
// arrive, then io.EOF.
func TestDirectWriteRacesClose(t *testing.T) {
	const streams, rounds = 4, 4
	modes := []string{"session Close", "session Abort", "peer session Close", "link cut", "stream Close", "stream CloseWrite"}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			for round := range rounds {
				raceRound(t, mode, streams, round)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func raceRound(t *testing.T, mode string, streams, round int) {
	cfg := flowConfig(64 << 10)
	cfg.CloseTimeout = 10 * time.Second
	l, wa, wb := checkedLink(t, cfg, cfg)
	defer func() {
		closed := make(chan struct{})
		go func() { l.close(); close(closed) }()
		waitOrHang(t, closed, "closing the sessions")
	}()

	type end struct {
		x, y    *Stream
		wrote   atomic.Int64
		started chan struct{}
		read    chan struct{} // closed when the reader has ended
		werr    error
		n       int64
		rerr    error
		bad     int64
	}
	ends := make([]*end, streams)
	for i := range ends {
		e := &end{started: make(chan struct{}), read: make(chan struct{})}
		e.x, e.y = l.open(t)
		ends[i] = e
	}
	var wg sync.WaitGroup
	for i, e := range ends {
		wg.Add(2)
		go func() {
			defer wg.Done()
			chunk := []int{1 << 10, 7 << 10, 24 << 10, 64 << 10}[(i+round)%4]
			var once sync.Once
			e.werr = writePattern(writerFunc(func(p []byte) (int, error) {
				n, err := e.x.Write(p)
				once.Do(func() { close(e.started) })
				return n, err
			}), 0, 1<<40, chunk, &e.wrote)
		}()
		go func() {
			defer wg.Done()
			defer close(e.read)
			e.n, e.rerr, e.bad = readPattern(e.y)
		}()
	}
	for _, e := range ends {
		<-e.started
	}
	switch mode {
	case "session Close":
		go l.a.Close()
	case "session Abort":
		go l.a.Abort(errors.New("maintenance"))
	case "peer session Close":
		go l.b.Close()
	case "link cut":
		l.ca.Close()
	case "stream Close":
		for _, e := range ends {
			go e.x.Close()
		}
	case "stream CloseWrite":
		for _, e := range ends {
			go func() {
				e.x.CloseWrite()
				// A Write waiting for credit is not woken by CloseWrite
				// (TestCloseWriteWakesWriteBlockedOnCredit): once the
				// peer has read to the end, Close releases it.
				<-e.read
				e.x.Close()
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitOrHang(t, done, fmt.Sprintf("round %d: the writers and readers", round))

	for i, e := range ends {
		if e.werr == nil {
			t.Errorf("round %d, stream %d: the writer ended without an error", round, i)
		}
		if e.bad >= 0 {
			t.Errorf("round %d, stream %d: byte %d read is not the byte written", round, i, e.bad)
		}
		if e.n > e.wrote.Load() {
			t.Errorf("round %d, stream %d: read %d bytes, more than the %d written", round, i, e.n, e.wrote.Load())
		}
		switch mode {
		case "stream Close", "stream CloseWrite":
			if !errors.Is(e.werr, net.ErrClosed) && !(mode == "stream CloseWrite" && errors.Is(e.werr, ErrWriteClosed)) {
				t.Errorf("round %d, stream %d: the writer ended with %v, want the end of the %s", round, i, e.werr, mode)
			}
			if e.rerr != io.EOF || e.n != e.wrote.Load() {
				t.Errorf("round %d, stream %d: the peer read %d bytes then %v; want the %d bytes Write accepted, then io.EOF",
					round, i, e.n, e.rerr, e.wrote.Load())
			}
		}
		e.x.Close()
		e.y.Close()
	}
	wa.check(t, "a")
	wb.check(t, "b")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestDirectWriteBlockedOnLink: a Write whose frame the link's connection
// does not take (the peer stopped reading it) still ends at its write
// deadline: a stream with a deadline never writes directly. (A Write
// already writing directly when the stream is closed waits for the link.)
func TestDirectWriteBlockedOnLink(t *testing.T) {
	for _, stop := range []string{"deadline", "Close"} {
		t.Run(stop, func(t *testing.T) {
			if stop == "Close" {
				t.Skip("a frame being written directly waits for the link (documented on Stream.Write): " +
					"the session's keepalive or Close ends a link that takes nothing")
			}
			ca, cb := net.Pipe()
			s := New(ca, newJSONFramer(ca), flowConfig(64<<10))
			defer s.Close()
			defer cb.Close() // unblocks what the test leaves blocked
			peer := newJSONFramer(cb)
			opened := make(chan *Stream, 1)
			go func() {
				st, _ := s.Open(context.Background(), "", "")
				opened <- st
			}()
			if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen {
				t.Fatalf("peer read %+v, %v; want an Open", f, err)
			}
			peer.WriteFrame(&Frame{Kind: KindAck, ID: 1})
			peer.Flush()
			st := <-opened
			if st == nil {
				t.Fatal("Open failed")
			}
			defer st.Close()

			// From here the peer reads one byte: a Write has begun, and
			// the link takes nothing more.
			if stop == "deadline" {
				st.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			}
			wrote := make(chan error, 1)
			go func() {
				_, err := st.Write(make([]byte, 1<<20))
				wrote <- err
			}()
			if _, err := io.ReadFull(cb, make([]byte, 1)); err != nil {
				t.Fatalf("reading the link: %v", err)
			}
			if stop == "Close" {
				st.Close()
			}
			select {
			case err := <-wrote:
				want := os.ErrDeadlineExceeded
				if stop == "Close" {
					want = net.ErrClosed
				}
				if !errors.Is(err, want) {
					t.Errorf("Write returned %v, want %v", err, want)
				}
			case <-time.After(hangBound):
				t.Fatalf("Write still blocked %v after its %s", hangBound, stop)
			}
		})
	}
}

// TestCloseWriteWakesWriteBlockedOnCredit: CloseWrite ends the stream's
// sending direction, so a Write waiting for credit on it must return
// (ErrWriteClosed), as a Write on a TCP connection fails after shutdown.
func TestCloseWriteWakesWriteBlockedOnCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 16 << 10
		l := newLink(t, flowConfig(window), flowConfig(window))
		defer l.close()
		x, y := l.open(t)
		defer y.Close()
		wrote := make(chan error, 1)
		go func() {
			_, err := x.Write(make([]byte, 4*window)) // nobody reads: blocks after one window
			wrote <- err
		}()
		synctest.Wait()
		x.CloseWrite()
		synctest.Wait()
		select {
		case err := <-wrote:
			if !errors.Is(err, ErrWriteClosed) {
				t.Errorf("Write blocked on credit returned %v after CloseWrite, want ErrWriteClosed", err)
			}
		default:
			t.Error("Write blocked on credit is still blocked after CloseWrite")
			x.Close()
			<-wrote
		}
		x.Close()
	})
}

// flushCounter counts the Flushes that put Data on the wire: one per
// system call on a link that buffers frames until Flush.
type flushCounter struct {
	Framer
	mu      sync.Mutex // guards data and flushes
	data    int        // Data frames written since the last Flush
	flushes int        // Flushes that had Data to write
}

func (fc *flushCounter) WriteFrame(f *Frame) error {
	if f.Kind == KindData {
		fc.mu.Lock()
		fc.data++
		fc.mu.Unlock()
	}
	return fc.Framer.WriteFrame(f)
}

func (fc *flushCounter) Flush() error {
	fc.mu.Lock()
	if fc.data > 0 {
		fc.flushes++
		fc.data = 0
	}
	fc.mu.Unlock()
	return fc.Framer.Flush()
}

// TestCombineSmallWrites has many streams of a link write a small message
// each at once, as a DP's readers do when one poll wakes them for many
// clients' requests: the message of the stream that finds the link idle
// waits while the others queue theirs, and all leave in a few writes, not
// one each (combine). Every message arrives, on its own stream.
func TestCombineSmallWrites(t *testing.T) {
	// One P: the writers run one after another, as the goroutines that
	// one poll wakes do on a busy machine.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ca, cb := flowtest.TCPPair(t)
	fc := &flushCounter{Framer: newBinFramer(ca)}
	l := &link{a: New(ca, fc, flowConfig(1<<20)), b: New(cb, newBinFramer(cb), flowConfig(1<<20)), ca: ca, cb: cb}
	defer l.close()

	const n = 20
	var from, at [n]*Stream
	for i := range n {
		from[i], at[i] = l.open(t)
	}
	fc.mu.Lock()
	fc.flushes, fc.data = 0, 0
	fc.mu.Unlock()

	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		go func() {
			<-start
			_, err := fmt.Fprintf(from[i], "request %02d", i)
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	for i := range n {
		got := make([]byte, len("request 00"))
		if _, err := io.ReadFull(at[i], got); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if want := fmt.Sprintf("request %02d", i); string(got) != want {
			t.Errorf("stream %d got %q, want %q", i, got, want)
		}
	}
	fc.mu.Lock()
	flushes := fc.flushes
	fc.mu.Unlock()
	t.Logf("%d messages in %d writes", n, flushes)
	if flushes > n/2 {
		t.Errorf("%d small messages of %d streams took %d writes to the link; want them combined into at most %d", n, n, flushes, n/2)
	}
}

// chunkChecker is a flushCounter that also records the largest Data frame
// it was given.
type chunkChecker struct {
	flushCounter
	largest atomic.Int64
}

func (cc *chunkChecker) WriteFrame(f *Frame) error {
	if f.Kind == KindData && int64(len(f.Data)) > cc.largest.Load() {
		cc.largest.Store(int64(len(f.Data)))
	}
	return cc.flushCounter.WriteFrame(f)
}

// TestDirectWriteBatchesFrames: a large Write on an idle link goes out in
// frames of at most ChunkSize, several of them before one Flush (one
// write of the link where the Framer buffers them), batchSize bytes a
// Flush; a small one still takes one Flush. The peer reads every byte in
// order.
func TestDirectWriteBatchesFrames(t *testing.T) {
	ca, cb := flowtest.TCPPair(t)
	cc := &chunkChecker{flushCounter: flushCounter{Framer: newBinFramer(ca)}}
	cfg := flowConfig(4 << 20)
	cfg.ChunkSize = 16 << 10
	l := &link{a: New(ca, cc, cfg), b: New(cb, newBinFramer(cb), cfg), ca: ca, cb: cb}
	defer l.close()
	from, at := l.open(t)
	// The write loop may still hold the link after the Open: wait until
	// it has let go, so that the Writes below find it idle.
	l.a.wmu.Lock()
	l.a.wmu.Unlock()
	cc.mu.Lock()
	cc.flushes, cc.data = 0, 0
	cc.mu.Unlock()

	batch := l.a.batchSize()
	if batch != maxBatchFrames*cfg.ChunkSize {
		t.Fatalf("batchSize = %d with ChunkSize %d; want %d", batch, cfg.ChunkSize, maxBatchFrames*cfg.ChunkSize)
	}
	p := make([]byte, 3*batch+100)
	for i := range p {
		p[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(p))
		io.ReadFull(at, b)
		got <- b
	}()
	if n, err := from.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
	}
	if b := <-got; !bytes.Equal(b, p) {
		t.Fatal("the peer read other bytes than were written")
	}
	cc.mu.Lock()
	flushes := cc.flushes
	cc.mu.Unlock()
	if want := 4; flushes != want {
		t.Errorf("a Write of %d bytes took %d Flushes; want %d (%d bytes each)", len(p), flushes, want, batch)
	}
	if got := cc.largest.Load(); got > int64(cfg.ChunkSize) {
		t.Errorf("largest Data frame %d bytes; want at most ChunkSize %d", got, cfg.ChunkSize)
	}
}

// TestWriteDataMoreThanABatch: writeData's callers other than
// Stream.Write (SpliceFrom's copies of up to smallSplice bytes) do not
// cut their bytes to batchSize; with a small ChunkSize that is more
// frames than a direct write keeps the ends of, and they must still go
// out whole and in order, not panic.
func TestWriteDataMoreThanABatch(t *testing.T) {
	ca, cb := flowtest.TCPPair(t)
	cfg := flowConfig(4 << 20)
	cfg.ChunkSize = 1 << 10
	l := &link{a: New(ca, newBinFramer(ca), cfg), b: New(cb, newBinFramer(cb), cfg), ca: ca, cb: cb}
	defer l.close()
	from, at := l.open(t)
	// Wait until the write loop has let go of the link after the Open,
	// so that the write below finds it idle and writes directly.
	l.a.wmu.Lock()
	l.a.wmu.Unlock()

	p := make([]byte, 32<<10)
	if len(p) <= l.a.batchSize() {
		t.Fatalf("%d bytes is no more than a batch (%d)", len(p), l.a.batchSize())
	}
	for i := range p {
		p[i] = byte(i * 5)
	}
	from.mu.Lock()
	from.credit -= len(p)
	from.mu.Unlock()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(p))
		io.ReadFull(at, b)
		got <- b
	}()
	var n int
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				l.a.wmu.Unlock() // held by the direct write that panicked
				t.Fatalf("writeData of %d bytes in frames of %d panicked: %v", len(p), cfg.ChunkSize, r)
			}
		}()
		n, err = l.a.writeData(from, p, nil)
	}()
	if n != len(p) || err != nil {
		t.Fatalf("writeData = %d, %v; want %d, nil", n, err, len(p))
	}
	if b := <-got; !bytes.Equal(b, p) {
		t.Fatal("the peer read other bytes than were written")
	}
}

// TestAloneDoesNotCombine: small Writes of one stream, with no other
// stream writing between them, do not yield to combine (a yield costs a
// thread wake-up per message); the first of a stream after another's
// does.
func TestAloneDoesNotCombine(t *testing.T) {
	ca, cb := flowtest.TCPPair(t)
	l := &link{a: New(ca, newBinFramer(ca), flowConfig(1<<20)), b: New(cb, newBinFramer(cb), flowConfig(1<<20)), ca: ca, cb: cb}
	defer l.close()
	from, at := l.open(t)
	other, otherAt := l.open(t)
	combines := func() int {
		l.a.wmu.Lock()
		defer l.a.wmu.Unlock()
		return l.a.combines
	}
	echoed := func(w io.Writer, r io.Reader) {
		t.Helper()
		if _, err := w.Write([]byte("ping")); err != nil {
			t.Fatalf("Write: %v", err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "ping" {
			t.Fatalf("read %q, %v; want ping", got, err)
		}
	}
	// The write loop may still hold the link after the Opens: wait until
	// it has let go, so that every Write below finds it idle and writes
	// directly (a queued one would not count as the stream's).
	l.a.wmu.Lock()
	l.a.wmu.Unlock()
	echoed(from, at)
	c0 := combines()
	for range 10 {
		echoed(from, at)
	}
	if c := combines() - c0; c != 0 {
		t.Errorf("10 small writes of a stream writing alone combined %d times, want 0", c)
	}
	echoed(other, otherAt)
	if c := combines() - c0; c != 1 {
		t.Errorf("a write of another stream combined %d times, want 1", c)
	}
}
