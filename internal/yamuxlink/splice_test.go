//go:build linux

package yamuxlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"rtcp/internal/flowtest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
	"rtcp/protocol/yamux"
)

// Tests of mux.Stream.SpliceFrom, which moves a TCP connection's bytes to
// a yamux link in the kernel (the Framer writes only each frame's
// header), and of relay.Join, which uses it for TCP into a stream.
// SpliceFrom is Linux only: elsewhere it reports ok false.

// Sizes of the bulk transfers, smaller under the race detector.
var (
	spliceSize = pick(16<<20, 4<<20)
	relaySize  = pick(8<<20, 2<<20)
	hcSize     = pick(8<<20, 1<<20) // hashicorp's side is slow under -race
)

func pick(full, race int) int {
	if raceEnabled {
		return race
	}
	return full
}

// smallSplice is mux's: the largest frame SpliceFrom reads back from its
// pipe and writes as an ordinary Data frame; larger ones are spliced.
const smallSplice = 32 << 10

// sentData returns the Data bytes this side wrote on stream id through
// WriteFrame: a spliced frame's bytes bypass it.
func (a *audit) sentData(id int64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent[id]
}

// endWatch is an audit that also checks, as frames arrive, that the peer
// sends no Data on a stream after that stream's FIN or RST. While stall
// is set it reads nothing until resume is closed: the link fills up.
type endWatch struct {
	*audit
	mu     sync.Mutex
	ended  map[int64]bool
	late   int // Data bytes that came after their stream's end
	stall  atomic.Bool
	resume chan struct{}
}

func (w *endWatch) ReadFrame() (*mux.Frame, error) {
	if w.stall.Load() {
		<-w.resume
	}
	f, err := w.audit.ReadFrame()
	if err != nil {
		return f, err
	}
	w.mu.Lock()
	switch {
	case f.Kind == mux.KindData && len(f.Data) > 0 && w.ended[f.ID]:
		w.late += len(f.Data)
	case (f.Kind == mux.KindCloseWrite || f.Kind == mux.KindClose) && f.ID > 0:
		w.ended[f.ID] = true
	}
	w.mu.Unlock()
	return f, nil
}

func (w *endWatch) lateData() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.late
}

// spliceRig is two of our sessions on a loopback link, a stream a (the
// client's) and its peer b (the server's), and a TCP connection whose
// bytes a splices: the test writes to feed, a.SpliceFrom reads src.
type spliceRig struct {
	t              testing.TB
	client, server *mux.Session
	ca             *audit
	sa             *endWatch
	cc, sc         net.Conn // the link's ends
	a, b           *mux.Stream
	feed, src      *net.TCPConn

	n, small, large atomic.Int64  // what count reported: bytes, pieces <= and > smallSplice
	counted         chan struct{} // cap 1: count was called
	once            sync.Once
}

// newSpliceRig starts a rig; adjust (if not nil) adjusts both sessions'
// Config.
func newSpliceRig(t testing.TB, adjust func(*mux.Config)) *spliceRig {
	t.Helper()
	r := &spliceRig{t: t, counted: make(chan struct{}, 1)}
	r.cc, r.sc = tcpPair(t)
	r.ca = newAudit(t, r.cc, true)
	r.sa = &endWatch{audit: newAudit(t, r.sc, false), ended: map[int64]bool{}, resume: make(chan struct{})}
	r.client = ours(r.cc, true, r.ca, adjust)
	r.server = ours(r.sc, false, r.sa, adjust)
	feed, src := tcpPair(t)
	r.feed, r.src = feed.(*net.TCPConn), src.(*net.TCPConn)
	t.Cleanup(r.close)
	r.a, r.b = openOurs(t, r.client, r.server.Accept)
	return r
}

// close ends everything the rig started (once) and checks that no Data
// followed a stream's end on the wire.
func (r *spliceRig) close() {
	r.once.Do(func() {
		close(r.sa.resume)
		r.feed.Close()
		r.src.Close()
		closeBoth(r.client, r.server)
		if n := r.sa.lateData(); n > 0 {
			r.t.Errorf("the client sent %d bytes of Data on streams it had already ended (FIN or RST)", n)
		}
	})
}

func (r *spliceRig) count(k int) {
	if k <= 0 {
		r.t.Errorf("count(%d)", k)
	}
	if k <= smallSplice {
		r.small.Add(1)
	} else {
		r.large.Add(1)
	}
	r.n.Add(int64(k))
	notify(r.counted, struct{}{})
}

// waitCounted waits until count has reported at least n bytes.
func (r *spliceRig) waitCounted(t testing.TB, n int64) {
	t.Helper()
	within(t, "SpliceFrom to send", func() {
		for r.n.Load() < n {
			<-r.counted
		}
	})
}

// splice runs r.a.SpliceFrom(r.src).
func (r *spliceRig) splice() <-chan spliceResult { return spliceInto(r.a, r.src, r.count) }

// check checks a clean end of SpliceFrom after total bytes, and that the
// pieces count reported add up to them.
func (r *spliceRig) check(t testing.TB, res spliceResult, total int) {
	t.Helper()
	if !res.ok || res.err != nil || res.n != int64(total) {
		t.Errorf("SpliceFrom: n %d, ok %v, %v; want %d, true, nil", res.n, res.ok, res.err, total)
	}
	if c := r.n.Load(); c != res.n {
		t.Errorf("count's pieces add up to %d, SpliceFrom returned %d", c, res.n)
	}
}

type spliceResult struct {
	n   int64
	ok  bool
	err error
}

// spliceInto runs st.SpliceFrom(src, count) and, when it ends cleanly,
// st.CloseWrite (as the relay does).
func spliceInto(st *mux.Stream, src *net.TCPConn, count func(int)) <-chan spliceResult {
	ch := make(chan spliceResult, 1)
	go func() {
		n, ok, err := st.SpliceFrom(src, count)
		if ok && err == nil {
			st.CloseWrite()
		}
		ch <- spliceResult{n, ok, err}
	}()
	return ch
}

// feedPattern writes n pattern bytes to w in writes of chunk, half-closes
// it, and sends their SHA-256.
func feedPattern(t testing.TB, w *net.TCPConn, n, chunk int, seed byte) <-chan [32]byte {
	ch := make(chan [32]byte, 1)
	go func() {
		s, err := writePattern(w, n, chunk, seed)
		if err != nil {
			t.Errorf("feeding SpliceFrom's source: %v", err)
		}
		w.CloseWrite()
		ch <- s
	}()
	return ch
}

// feedForever writes to w until a write fails; done is closed then.
func feedForever(w net.Conn) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}()
	return ch
}

type sumResult struct {
	sum [32]byte
	n   int64
	err error
}

func readSumAsync(r io.Reader) <-chan sumResult {
	ch := make(chan sumResult, 1)
	go func() {
		s, n, err := readSum(r)
		ch <- sumResult{s, n, err}
	}()
	return ch
}

func recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	var v T
	within(t, what, func() { v = <-ch })
	return v
}

// TestSpliceFrom moves bytes from a TCP connection into a stream with
// SpliceFrom: the peer reads exactly them, then the end.
func TestSpliceFrom(t *testing.T) {
	t.Run("bulk", func(t *testing.T) {
		r := newSpliceRig(t, nil)
		sum := feedPattern(t, r.feed, spliceSize, 256<<10, 1)
		res := r.splice()
		got := recv(t, "the peer to read to the end", readSumAsync(r.b))
		if want := <-sum; got.err != nil || got.n != int64(spliceSize) || got.sum != want {
			t.Errorf("the peer read %d bytes, %v, SHA-256 match %v; want %d", got.n, got.err, got.sum == want, spliceSize)
		}
		r.check(t, recv(t, "SpliceFrom", res), spliceSize)
		if r.large.Load() == 0 {
			t.Error("no frame took the splice path")
		}
		if d := r.ca.sentData(r.a.ID()); d >= spliceSize {
			t.Errorf("all %d bytes went through WriteFrame: nothing was spliced", d)
		}
		t.Logf("%d pieces <= 32 KiB, %d larger; %d bytes through WriteFrame", r.small.Load(), r.large.Load(), r.ca.sentData(r.a.ID()))
	})

	// Pieces of 1 to 40000 bytes, most written only once the one before
	// has been sent, then a burst of 1 MiB, so that frames go both ways:
	// copied and written (<= 32 KiB), and spliced.
	t.Run("pieces", func(t *testing.T) {
		r := newSpliceRig(t, nil)
		res := r.splice()
		read := readSumAsync(r.b)
		rng := rand.New(rand.NewPCG(1, 2))
		h := sha256.New()
		buf := make([]byte, 40000)
		total := 0
		for total < spliceSize/4 {
			k := 1 + rng.IntN(len(buf))
			for i := range buf[:k] {
				buf[i] = byte(rng.Uint32())
			}
			h.Write(buf[:k])
			if _, err := r.feed.Write(buf[:k]); err != nil {
				t.Fatal(err)
			}
			total += k
			if rng.IntN(4) != 0 { // now and then, a burst
				r.waitCounted(t, int64(total))
			}
		}
		// Small reads are copied; a bulk transfer, one that fills the
		// copy buffer, is spliced: end with one, so that both paths run.
		bulk := make([]byte, 1<<20)
		for i := range bulk {
			bulk[i] = byte(rng.Uint32())
		}
		h.Write(bulk)
		if _, err := r.feed.Write(bulk); err != nil {
			t.Fatal(err)
		}
		total += len(bulk)
		r.feed.CloseWrite()
		got := recv(t, "the peer to read to the end", read)
		if want := [32]byte(h.Sum(nil)); got.err != nil || got.n != int64(total) || got.sum != want {
			t.Errorf("the peer read %d bytes, %v, SHA-256 match %v; want %d", got.n, got.err, got.sum == want, total)
		}
		r.check(t, recv(t, "SpliceFrom", res), total)
		if r.small.Load() == 0 || r.large.Load() == 0 {
			t.Errorf("%d frames <= 32 KiB, %d larger: want both paths", r.small.Load(), r.large.Load())
		}
		t.Logf("%d bytes: %d frames <= 32 KiB, %d larger; %d bytes through WriteFrame", total, r.small.Load(), r.large.Load(), r.ca.sentData(r.a.ID()))
	})

	// The peer's reader stalls until the whole window is in flight: the
	// source has plenty, so SpliceFrom must wait for credit; the server's
	// audit fails the test if the client ever sends beyond the window.
	t.Run("stalled reader", func(t *testing.T) {
		size := max(spliceSize, 8<<20) // stalledRead fills the window three times
		r := newSpliceRig(t, nil)
		sum := feedPattern(t, r.feed, size, 256<<10, 3)
		res := r.splice()
		stalledRead(t, r.b, r.sa.full, size, sum)
		r.check(t, recv(t, "SpliceFrom", res), size)
		if m := r.sa.most(); m.recv != DefaultWindow {
			t.Errorf("most in flight toward the server: %d; want the window, %d", m.recv, DefaultWindow)
		}
	})
}

// plainFramer hides the Framer's WriteDataHeader.
type plainFramer struct{ mux.Wire }

// TestSpliceFromUnsupported: where SpliceFrom cannot splice, it says so
// (ok false) without reading anything.
func TestSpliceFromUnsupported(t *testing.T) {
	for _, c := range []struct {
		name string
		link func(t testing.TB) (net.Conn, net.Conn)
		fr   func(c net.Conn, client bool) mux.Framer
	}{
		{"link over net.Pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }, nil},
		{"Framer without WriteDataHeader", tcpPair, func(c net.Conn, client bool) mux.Framer {
			return plainFramer{NewFramer(c, c, DefaultWindow, client)}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc, sc := c.link(t)
			var cfr, sfr mux.Framer
			if c.fr != nil {
				cfr, sfr = c.fr(cc, true), c.fr(sc, false)
			}
			client, server := ours(cc, true, cfr, nil), ours(sc, false, sfr, nil)
			t.Cleanup(func() { closeBoth(client, server) })
			a, b := openOurs(t, client, server.Accept)
			feed, src := tcpPair(t)
			defer feed.Close()
			defer src.Close()
			const msg = "still here"
			if _, err := feed.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			called := false
			n, ok, err := a.SpliceFrom(src.(*net.TCPConn), func(int) { called = true })
			if n != 0 || ok || err != nil || called {
				t.Errorf("SpliceFrom: %d, %v, %v (count called: %v); want 0, false, nil", n, ok, err, called)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(src, buf); err != nil || string(buf) != msg {
				t.Errorf("the source after SpliceFrom: %q, %v; want %q", buf, err, msg)
			}
			// The stream is as it was.
			echo(t, a, b)
		})
	}
}

// TestSpliceFromSourceReset resets SpliceFrom's source mid-transfer: an
// error, not an end; the session and its other streams go on.
func TestSpliceFromSourceReset(t *testing.T) {
	r := newSpliceRig(t, nil)
	fed := feedForever(r.feed)
	read := readSumAsync(r.b)
	res := r.splice()
	r.waitCounted(t, 1<<20)
	r.feed.SetLinger(0)
	r.feed.Close()
	<-fed
	got := recv(t, "SpliceFrom", res)
	if !got.ok || got.err == nil {
		t.Fatalf("SpliceFrom after its source was reset: n %d, ok %v, %v; want an error", got.n, got.ok, got.err)
	}
	t.Logf("SpliceFrom: %d bytes, %v", got.n, got.err)
	if got.n != r.n.Load() {
		t.Errorf("count's pieces add up to %d, SpliceFrom returned %d", r.n.Load(), got.n)
	}
	r.a.Abort(got.err) // as the relay does
	if rd := recv(t, "the peer's reader", read); rd.err == nil || rd.n != got.n {
		t.Errorf("the peer read %d bytes, %v; want the %d sent, then an error", rd.n, rd.err, got.n)
	}
	a2, b2 := openOurs(t, r.client, r.server.Accept)
	echo(t, a2, b2)
	a2.Close()
	b2.Close()
	if r.client.Err() != nil || r.server.Err() != nil {
		t.Errorf("the sessions ended: %v, %v", r.client.Err(), r.server.Err())
	}
}

// TestSpliceFromLinkLoss closes the link under a SpliceFrom, 50 times:
// an error each time, no goroutine left, and no descriptors (pooled pipes
// aside).
func TestSpliceFromLinkLoss(t *testing.T) {
	round := func() {
		r := newSpliceRig(t, nil)
		defer r.close()
		fed := feedForever(r.feed)
		read := readSumAsync(r.b)
		res := r.splice()
		r.waitCounted(t, 256<<10)
		r.sc.Close() // the server's end of the link
		if got := recv(t, "SpliceFrom", res); !got.ok || got.err == nil {
			t.Errorf("SpliceFrom on a lost link: n %d, ok %v, %v; want an error", got.n, got.ok, got.err)
		}
		r.close()
		<-fed
		if rd := recv(t, "the peer's reader", read); rd.err == nil {
			t.Errorf("the peer read %d bytes and a clean end from a lost link", rd.n)
		}
	}
	round() // the pools fill
	before := openFDs(t)
	for range 50 {
		round()
		if t.Failed() {
			return
		}
	}
	after := openFDs(t)
	t.Logf("open descriptors: %d before 50 rounds, %d after", before, after)
	if after > before+16 {
		t.Errorf("%d descriptors open after 50 rounds, %d before", after, before)
	}
	goleak.VerifyNone(t)
}

// openFDs counts this process's open descriptors, after the garbage
// collector has closed the pipes the pool let go.
func openFDs(t testing.TB) int {
	for range 3 {
		runtime.GC()
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// TestSpliceRelayJoin relays a TCP client to a TCP server through a yamux
// stream, with relay.Join at each end: 8 MiB each way at once, then the
// client's half-close crosses, the server answers and closes. TCP into
// the stream is SpliceFrom at both ends, the stream to TCP is PushTo.
func TestSpliceRelayJoin(t *testing.T) {
	r := newSpliceRig(t, nil)
	client, edge := tcpPair(t) // the client, and the relay's end of its connection
	exit, server := tcpPair(t) // the relay's connection to the server, and the server
	defer client.Close()
	defer server.Close()
	type joined struct {
		st  relay.Stats
		err error
	}
	j1, j2 := make(chan joined, 1), make(chan joined, 1)
	go func() {
		st, err := relay.Join(edge, r.a, nil)
		j1 <- joined{st, err}
	}()
	go func() {
		st, err := relay.Join(r.b, exit, nil)
		j2 <- joined{st, err}
	}()

	// The server reads to the client's end while it sends its own bytes,
	// then answers with the SHA-256 of what it read, and closes.
	type served struct {
		read sumResult
		sent [32]byte
	}
	srv := make(chan served, 1)
	go func() {
		sent := make(chan [32]byte, 1)
		go func() {
			s, err := writePattern(server, relaySize, 100<<10, 2)
			if err != nil {
				t.Errorf("server write: %v", err)
			}
			sent <- s
		}()
		s, n, err := readSum(server)
		out := <-sent
		server.Write(s[:])
		server.Close()
		srv <- served{sumResult{s, n, err}, out}
	}()

	up := make(chan [32]byte, 1)
	go func() {
		s, err := writePattern(client, relaySize, 64<<10, 1)
		if err != nil {
			t.Errorf("client write: %v", err)
		}
		client.(*net.TCPConn).CloseWrite()
		up <- s
	}()
	var down, answer []byte
	within(t, "the client to read to the end", func() {
		h := sha256.New()
		if _, err := io.CopyN(h, client, int64(relaySize)); err != nil {
			t.Errorf("client read: %v", err)
		}
		down = h.Sum(nil)
		var err error
		if answer, err = io.ReadAll(client); err != nil {
			t.Errorf("client read: %v", err)
		}
	})
	s := recv(t, "the server", srv)
	sentUp := <-up
	if s.read.err != nil || s.read.n != int64(relaySize) || s.read.sum != sentUp {
		t.Errorf("the server read %d bytes, %v, SHA-256 match %v; want %d", s.read.n, s.read.err, s.read.sum == sentUp, relaySize)
	}
	if !bytes.Equal(down, s.sent[:]) {
		t.Error("the client read other bytes than the server sent")
	}
	if !bytes.Equal(answer, sentUp[:]) {
		t.Errorf("the server's answer: %x; want the SHA-256 of the client's bytes, %x", answer, sentUp)
	}
	want := relay.Stats{AtoB: int64(relaySize), BtoA: int64(relaySize + 32)}
	for i, j := range []joined{recv(t, "the client's Join", j1), recv(t, "the server's Join", j2)} {
		if j.err != nil || j.st != want {
			t.Errorf("Join %d: %+v, %v; want %+v, nil", i+1, j.st, j.err, want)
		}
	}
	// The bytes that went through WriteFrame are the frames of 32 KiB or
	// less; the rest was spliced.
	if d := r.ca.sentData(r.a.ID()); d >= relaySize {
		t.Errorf("the client's side wrote all %d bytes through WriteFrame: no splice", d)
	}
	if d := r.sa.sentData(r.b.ID()); d >= relaySize {
		t.Errorf("the server's side wrote all %d bytes through WriteFrame: no splice", d)
	}
}

// TestSpliceInterop splices into our stream whose peer is hashicorp/yamux.
func TestSpliceInterop(t *testing.T) {
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			l := newHLink(t, role.oursClient, hcConfig(), nil)
			st, hs := l.openOurs(t)
			feed, src := tcpPair(t)
			defer feed.Close()
			defer src.Close()
			sum := feedPattern(t, feed.(*net.TCPConn), hcSize, 256<<10, 4)
			var counted atomic.Int64
			res := spliceInto(st, src.(*net.TCPConn), func(k int) { counted.Add(int64(k)) })
			got := recv(t, "hashicorp to read to the end", readSumAsync(hs))
			if want := <-sum; got.err != nil || got.n != int64(hcSize) || got.sum != want {
				t.Errorf("hashicorp read %d bytes, %v, SHA-256 match %v; want %d", got.n, got.err, got.sum == want, hcSize)
			}
			if r := recv(t, "SpliceFrom", res); !r.ok || r.err != nil || r.n != int64(hcSize) || counted.Load() != r.n {
				t.Errorf("SpliceFrom: n %d (counted %d), ok %v, %v; want %d, true, nil", r.n, counted.Load(), r.ok, r.err, hcSize)
			}
			if d := l.a.sentData(st.ID()); d >= hcSize {
				t.Errorf("all %d bytes went through WriteFrame: nothing was spliced", d)
			}
			hs.Close()
			st.Close()
			st2, hs2 := l.openOurs(t)
			echo(t, st2, hs2)
		})
	}
}

// The functions in which SpliceFrom waits for src: copying small reads,
// or splicing a bulk transfer.
const (
	waitsCopying  = "rtcp/internal/mux.(*Stream).copySmall"
	waitsSplicing = "rtcp/internal/mux.spliceIn"
)

// TestSpliceFromAfterEnd ends the stream (Close, Abort) while SpliceFrom
// waits for its source's next bytes, which then come: no Data may follow
// the stream's FIN or RST on the wire, and SpliceFrom returns an error.
// It waits copying after a small first piece, and splicing after a bulk
// one (two full buffers, in src before SpliceFrom starts).
//
// spliceOut checks, under qmu, that the stream's end has not been queued
// while it waited for src (the bug this test found in 2a0b698).
func TestSpliceFromAfterEnd(t *testing.T) {
	for _, c := range []struct {
		name  string
		end   func(*mux.Stream)
		first int
		waits string
	}{
		{"Close", func(st *mux.Stream) { st.Close() }, 5, waitsCopying},
		{"Abort", func(st *mux.Stream) { st.Abort(errors.New("rtcp: cut off")) }, 5, waitsCopying},
		{"CloseBulk", func(st *mux.Stream) { st.Close() }, 2 * smallSplice, waitsSplicing},
		{"AbortBulk", func(st *mux.Stream) { st.Abort(errors.New("rtcp: cut off")) }, 2 * smallSplice, waitsSplicing},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newSpliceRig(t, nil)
			if _, err := r.feed.Write(make([]byte, c.first)); err != nil {
				t.Fatal(err)
			}
			res := r.splice()
			r.waitCounted(t, int64(c.first))
			waitParked(t, c.waits)
			c.end(r.a)
			// Large enough for a frame of its own either way.
			if _, err := r.feed.Write(make([]byte, 100<<10)); err != nil {
				t.Fatal(err)
			}
			got := recv(t, "SpliceFrom", res)
			if got.err == nil {
				t.Errorf("SpliceFrom on an ended stream: n %d, %v; want an error", got.n, got.err)
			}
			// Once an echo on another stream is back, the server has read
			// all that the client sent before it.
			a2, b2 := openOurs(t, r.client, r.server.Accept)
			echo(t, a2, b2)
			if n := r.sa.lateData(); n > 0 {
				t.Errorf("SpliceFrom sent %d bytes on the stream after its end (n %d, %v)", n, got.n, got.err)
			}
		})
	}
}

// waitParked waits until a goroutine is parked waiting for I/O in fn.
func waitParked(t testing.TB, fn string) { waitState(t, "IO wait", fn) }

// waitState waits until a goroutine is parked in state ("IO wait",
// "select") with fn on its stack: a goroutine dump is the only way to
// know that SpliceFrom has got there.
func waitState(t testing.TB, state, fn string) {
	t.Helper()
	flowtest.WaitParked(t, hangLimit, fn, state)
}

// TestSpliceFromCloseOnFullLink closes the session while SpliceFrom is
// blocked writing a frame to a link the peer has stopped reading: Close
// returns (its flush bounded by CloseTimeout), and so does SpliceFrom,
// with an error.
func TestSpliceFromCloseOnFullLink(t *testing.T) {
	r := newSpliceRig(t, func(c *mux.Config) { c.CloseTimeout = 50 * time.Millisecond })
	// Socket buffers well under the 4 MiB window, so the link fills
	// before the stream's credit runs out.
	r.cc.(*net.TCPConn).SetWriteBuffer(32 << 10)
	r.sc.(*net.TCPConn).SetReadBuffer(32 << 10)
	r.sa.stall.Store(true)
	fed := feedForever(r.feed)
	res := r.splice()
	waitParked(t, "rtcp/internal/mux.(*Stream).spliceOut")
	within(t, "the client's Close", func() { r.client.Close() })
	if got := recv(t, "SpliceFrom", res); !got.ok || got.err == nil {
		t.Errorf("SpliceFrom on a closed session: n %d, ok %v, %v; want an error", got.n, got.ok, got.err)
	}
	r.close()
	<-fed
}

// TestSpliceFromConcurrent runs three splices and a stream written with
// Write on one session at once, with data coming back on the first
// stream (its window grants go out between the spliced frames): every
// stream gets its own bytes, in order.
func TestSpliceFromConcurrent(t *testing.T) {
	r := newSpliceRig(t, nil)
	size := relaySize / 2
	var wg sync.WaitGroup
	check := func(name string, read <-chan sumResult, sum <-chan [32]byte) {
		defer wg.Done()
		got := <-read
		if want := <-sum; got.err != nil || got.n != int64(size) || got.sum != want {
			t.Errorf("%s: read %d bytes, %v, SHA-256 match %v; want %d", name, got.n, got.err, got.sum == want, size)
		}
	}
	for i := range 3 {
		a, b := r.a, r.b
		if i > 0 {
			a, b = openOurs(t, r.client, r.server.Accept)
		}
		feed, src := tcpPair(t)
		defer feed.Close()
		defer src.Close()
		sum := feedPattern(t, feed.(*net.TCPConn), size, 100<<10+i*7919, byte(10+i))
		var n atomic.Int64
		count := func(k int) { n.Add(int64(k)) }
		if i == 1 {
			count = nil // the relay always counts; nil must do too
		}
		res := spliceInto(a, src.(*net.TCPConn), count)
		wg.Add(2)
		go check("splice "+string(rune('1'+i)), readSumAsync(b), sum)
		go func() {
			defer wg.Done()
			got := <-res
			if !got.ok || got.err != nil || got.n != int64(size) || (count != nil && n.Load() != got.n) {
				t.Errorf("SpliceFrom %d: n %d (counted %d), ok %v, %v", i+1, got.n, n.Load(), got.ok, got.err)
			}
		}()
	}
	write := func(w *mux.Stream, chunk int, seed byte) <-chan [32]byte {
		ch := make(chan [32]byte, 1)
		go func() {
			s, err := writePattern(w, size, chunk, seed)
			if err != nil {
				t.Errorf("Write: %v", err)
			}
			w.CloseWrite()
			ch <- s
		}()
		return ch
	}
	a, b := openOurs(t, r.client, r.server.Accept)
	wg.Add(2)
	go check("Write", readSumAsync(b), write(a, 5000, 20))
	go check("back on the first stream", readSumAsync(r.a), write(r.b, 70<<10, 21))
	within(t, "the transfers", wg.Wait)
}

// TestSpliceFromWriteDeadline: SpliceFrom waiting for credit gives up at
// the stream's write deadline, having sent whole frames only; SpliceFrom
// after the deadline is cleared goes on where it stopped.
func TestSpliceFromWriteDeadline(t *testing.T) {
	const size, rest = DefaultWindow + 1<<20, 1 << 20
	r := newSpliceRig(t, nil)
	sum := feedPattern(t, r.feed, size, 256<<10, 5)
	res := r.splice()
	// The whole window is in flight (not just yamux's initial 256 KiB,
	// which SpliceFrom may be down to before the rest is granted), and
	// SpliceFrom waits for more.
	r.waitCounted(t, DefaultWindow)
	waitState(t, "select", "rtcp/internal/mux.(*Stream).takeCredit")
	r.a.SetWriteDeadline(time.Now())
	got := recv(t, "SpliceFrom", res)
	var ne net.Error
	if !errors.Is(got.err, os.ErrDeadlineExceeded) || !errors.As(got.err, &ne) || !ne.Timeout() {
		t.Errorf("SpliceFrom past its write deadline: %v; want a timeout", got.err)
	}
	if got.n != DefaultWindow || r.n.Load() != got.n {
		t.Errorf("SpliceFrom sent %d bytes (counted %d) before the deadline; want the window, %d", got.n, r.n.Load(), DefaultWindow)
	}
	r.a.SetWriteDeadline(time.Time{})
	res = r.splice()
	read := recv(t, "the peer to read to the end", readSumAsync(r.b))
	if want := <-sum; read.err != nil || read.n != size || read.sum != want {
		t.Errorf("the peer read %d bytes, %v, SHA-256 match %v; want %d", read.n, read.err, read.sum == want, size)
	}
	if got := recv(t, "SpliceFrom", res); got.err != nil || got.n != rest {
		t.Errorf("the second SpliceFrom: %d, %v; want %d, nil", got.n, got.err, rest)
	}
}

// TestSpliceFromPeerReset: the peer resets the stream mid-SpliceFrom;
// SpliceFrom returns its reset.
func TestSpliceFromPeerReset(t *testing.T) {
	r := newSpliceRig(t, nil)
	fed := feedForever(r.feed)
	res := r.splice()
	r.waitCounted(t, 1<<20)
	r.b.Abort(errors.New("rtcp: cut off"))
	got := recv(t, "SpliceFrom", res)
	if got.err == nil || !strings.Contains(got.err.Error(), ResetReason) {
		t.Errorf("SpliceFrom after the peer's reset: n %d, %v; want %q", got.n, got.err, ResetReason)
	}
	r.close()
	<-fed
}

// TestSpliceFromAfterEndHashicorp is TestSpliceFromAfterEnd's Close with
// hashicorp/yamux as the peer, where the late frame shows: its reader
// gets bytes after io.EOF.
func TestSpliceFromAfterEndHashicorp(t *testing.T) {
	l := newHLink(t, true, hcConfig(), nil)
	st, hs := l.openOurs(t)
	feed, src := tcpPair(t)
	defer feed.Close()
	defer src.Close()
	counted := make(chan struct{}, 1)
	res := spliceInto(st, src.(*net.TCPConn), func(int) { notify(counted, struct{}{}) })
	if _, err := feed.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	recv(t, "SpliceFrom to send", counted)
	waitParked(t, waitsCopying)
	st.Close()
	if got, err := io.ReadAll(hs); err != nil || string(got) != "first" {
		t.Fatalf("hashicorp read %q, %v; want %q and the end", got, err, "first")
	}
	if _, err := feed.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, "SpliceFrom", res); got.err == nil {
		t.Errorf("SpliceFrom on a closed stream: n %d, nil error", got.n)
	}
	st2, hs2 := l.openOurs(t)
	echo(t, st2, hs2) // hashicorp has read all that came before
	if n, err := hs.Read(make([]byte, 200<<10)); n != 0 || err != io.EOF {
		t.Errorf("hashicorp's Read after io.EOF: %d bytes, %v; want 0, io.EOF", n, err)
	}
}

// TestSpliceFromCopiesSmall: SpliceFrom copies small pieces (a splice
// would cost more system calls than it saves), splices a bulk transfer
// that follows them, and copies again the small pieces after it; every
// byte arrives, in order.
func TestSpliceFromCopiesSmall(t *testing.T) {
	r := newSpliceRig(t, nil)
	res := r.splice()
	var sent int64
	const bulk = 4 << 20
	exchange := func(rounds int) {
		t.Helper()
		msg := make([]byte, 30)
		got := make([]byte, 30)
		for i := 0; i < rounds; i++ {
			for j := range msg {
				msg[j] = byte(i + j)
			}
			if _, err := r.feed.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.b, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("message %d: read %x, %v; want %x", i, got, err, msg)
			}
			sent += int64(len(msg))
		}
		r.waitCounted(t, sent)
		waitParked(t, waitsCopying)
	}
	exchange(200)
	if d := r.ca.sentData(r.a.ID()); d != int(sent) {
		t.Fatalf("%d of %d bytes went through WriteFrame", d, sent)
	}
	before := r.ca.sentData(r.a.ID())
	fed := feedPatternOpen(t, r.feed, bulk)
	got := recv(t, "the bulk bytes", readSumAsync(io.LimitReader(r.b, bulk)))
	if want := <-fed; got.err != nil || got.n != bulk || got.sum != want {
		t.Fatalf("read %d bulk bytes, %v, SHA-256 match %v; want %d", got.n, got.err, got.sum == want, bulk)
	}
	sent += bulk
	if d := r.ca.sentData(r.a.ID()) - before; d >= bulk {
		t.Errorf("all %d bulk bytes went through WriteFrame: nothing was spliced", d)
	}
	exchange(200)
	r.feed.CloseWrite()
	r.check(t, recv(t, "SpliceFrom", res), int(sent))
}

// feedPatternOpen writes n pattern bytes to w without closing it, and
// sends their SHA-256.
func feedPatternOpen(t testing.TB, w io.Writer, n int) <-chan [32]byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	sum := make(chan [32]byte, 1)
	go func() {
		if _, err := w.Write(b); err != nil {
			t.Error(err)
		}
		sum <- sha256.Sum256(b)
	}()
	return sum
}

// TestSpliceFromCountsWhatTheLinkTook cuts the link in the middle of a
// spliced frame: the frame's header and part of its bytes are on the
// link, which a yamux peer reads (dataOnWire). SpliceFrom must count
// them, as Write counts the part of a frame the link took: it returns,
// and count reports, exactly the stream's Data the wire carries.
func TestSpliceFromCountsWhatTheLinkTook(t *testing.T) {
	cc, sc := tcpPair(t)
	defer sc.Close()
	// Socket buffers far below the spliced frame (the stream's credit,
	// yamux's 256 KiB, less the first small frame), so the splice waits
	// for the peer, which stops reading once the frame has begun.
	cc.(*net.TCPConn).SetWriteBuffer(8 << 10)
	sc.(*net.TCPConn).SetReadBuffer(8 << 10)
	s := ours(cc, true, nil, nil)
	defer s.Close()
	st, err := s.Open(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}

	// The source holds more than the stream may send before SpliceFrom
	// starts: its first read fills smallSplice (bulk), and the next takes
	// all the credit left, one spliced frame.
	feed, src := tcpPair(t)
	defer feed.Close()
	defer src.Close()
	src.(*net.TCPConn).SetReadBuffer(2 << 20)
	fed := feedPatternOpen(t, feed, 512<<10)
	within(t, "the source to fill", func() {
		for inq(t, src.(*net.TCPConn)) < yamux.InitialWindow {
			runtime.Gosched()
		}
	})

	begun := make(chan struct{})
	resume := make(chan struct{})
	wire := make(chan []byte, 1)
	go func() {
		var b []byte
		buf := make([]byte, 512)
		stopped := false
		for {
			n, err := sc.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
			if !stopped && splicedBegun(b) {
				stopped = true
				close(begun)
				<-resume
			}
		}
		wire <- b
	}()
	var counted atomic.Int64
	res := spliceInto(st, src.(*net.TCPConn), func(k int) { counted.Add(int64(k)) })
	recv(t, "the spliced frame to begin on the wire", begun)
	waitParked(t, "rtcp/internal/mux.(*Stream).spliceOut")
	cc.SetWriteDeadline(time.Now()) // the splice fails, part of its frame out
	got := recv(t, "SpliceFrom", res)
	close(resume)
	onWire := dataOnWire(recv(t, "the peer to read to the end", wire), uint32(st.ID()))
	if !got.ok || got.err == nil {
		t.Errorf("SpliceFrom cut in a frame: n %d, ok %v, %v; want an error", got.n, got.ok, got.err)
	}
	if got.n != int64(onWire) || counted.Load() != got.n {
		t.Errorf("SpliceFrom returned %d (counted %d); the wire carries %d bytes of the stream's Data", got.n, counted.Load(), onWire)
	}
	if onWire <= smallSplice {
		t.Errorf("the wire carries %d bytes of the stream's Data: none of the spliced frame's", onWire)
	}
	feed.Close()
	<-fed
}

// splicedBegun reports whether wire holds the header of a spliced Data
// frame (longer than smallSplice) and at least one of its bytes.
func splicedBegun(wire []byte) bool {
	for len(wire) >= yamux.HeaderLen {
		h, err := yamux.ParseHeader(wire)
		if err != nil {
			return false
		}
		wire = wire[yamux.HeaderLen:]
		if h.Type != yamux.TypeData {
			continue
		}
		if h.Length > smallSplice && len(wire) > 0 {
			return true
		}
		wire = wire[min(int(h.Length), len(wire)):]
	}
	return false
}

// inq returns how many bytes c has received that nobody has read.
func inq(t testing.TB, c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatal(os.NewSyscallError("ioctl SIOCINQ", errno))
	}
	return int(n)
}

// TestSpliceFromWaitingForTheLinkGivesUp: a SpliceFrom whose frame waits
// for the link, which another stream's splice holds on a link the peer
// has stopped reading, gives the wait up at its stream's Close, at its
// write deadline and at the session's end, as a Write does (waitLink).
func TestSpliceFromWaitingForTheLinkGivesUp(t *testing.T) {
	for _, end := range []string{"Close", "write deadline", "session end"} {
		t.Run(end, func(t *testing.T) {
			r := newSpliceRig(t, func(c *mux.Config) { c.CloseTimeout = time.Hour })
			// Socket buffers well under the stream's credit, so that the
			// link fills before the credit runs out.
			r.cc.(*net.TCPConn).SetWriteBuffer(32 << 10)
			r.sc.(*net.TCPConn).SetReadBuffer(32 << 10)
			c, _ := openOurs(t, r.client, r.server.Accept)
			r.sa.stall.Store(true)
			fedA := feedForever(r.feed)
			resA := r.splice()
			waitParked(t, "rtcp/internal/mux.(*Stream).spliceOut")

			feed, src := tcpPair(t)
			fedC := feedForever(feed)
			resC := spliceInto(c, src.(*net.TCPConn), nil)
			waitLinkWait(t, "rtcp/internal/mux.(*Stream).spliceOut")

			closed := make(chan struct{})
			switch end {
			case "Close":
				c.Close()
				close(closed)
			case "write deadline":
				c.SetWriteDeadline(time.Now())
				close(closed)
			case "session end":
				go func() {
					r.client.Close() // waits to flush for CloseTimeout: the peer reads nothing
					close(closed)
				}()
			}
			got := recv(t, "the waiting SpliceFrom", resC)
			if !got.ok || got.err == nil {
				t.Errorf("SpliceFrom waiting for the link after %s: n %d, ok %v, %v; want an error", end, got.n, got.ok, got.err)
			}
			if end == "write deadline" && !errors.Is(got.err, os.ErrDeadlineExceeded) {
				t.Errorf("SpliceFrom waiting for the link past its write deadline: %v; want a timeout", got.err)
			}
			feed.Close()
			src.Close()
			<-fedC
			r.close()
			<-closed
			<-fedA
			recv(t, "the splice that held the link", resA)
		})
	}
}

// waitLinkWait waits until a goroutine waits for the link's writer lock
// with fn on its stack: in waitLink's select, or, before it waited so, in
// a channel send that nothing could give up.
func waitLinkWait(t testing.TB, fn string) {
	t.Helper()
	flowtest.WaitParked(t, hangLimit, fn, "select", "chan send")
}
