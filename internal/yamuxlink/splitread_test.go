//go:build linux

package yamuxlink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

// Tests of split Data frames (Framer.SplitData, mux.DataSplitter): the
// receiving session takes the bytes of a long frame off the link itself,
// spliced into the destination of a stream relayed with WriteTo, read and
// buffered otherwise.

// splitCount is a Framer with SplitData on that counts the frames it
// split, the bytes left to the session, and those of them the session
// read with ReadRest rather than splice. It also signals spent when the
// session has taken in all that a stream's peer may send: every byte of
// the window it was granted, with no more credit written since.
type splitCount struct {
	*Framer
	frames, rest, read atomic.Int64

	mu      sync.Mutex    // guards the fields below
	lastID  int64         // the stream of the Data frame ReadFrame returned last
	lastN   int           // its bytes, rest included; 0: none pending
	taken   map[int64]int // Data the session has taken in, per stream
	granted map[int64]int // credit written to the peer, per stream
	spent   chan int64    // cap 1: a stream's window was taken in whole
}

func (s *splitCount) ReadRest(p []byte) (int, error) {
	n, err := s.Framer.ReadRest(p)
	s.read.Add(int64(n))
	return n, err
}

// spliced returns how many bytes of split frames were spliced.
func (s *splitCount) spliced() int64 { return s.rest.Load() - s.read.Load() }

func newSplitCount(c net.Conn) *splitCount {
	fr := NewFramer(c, c, DefaultWindow, false)
	fr.SplitData()
	return &splitCount{
		Framer:  fr,
		taken:   map[int64]int{},
		granted: map[int64]int{},
		spent:   make(chan int64, 1),
	}
}

func (s *splitCount) ReadFrame() (*mux.Frame, error) {
	// The session calls ReadFrame again only once it has handled the
	// last frame, its rest included: those bytes are now in the stream's
	// destination, pipes or buffer. When they are all the credit written
	// for the stream (and its first grant, to a full window, is among
	// it), the peer can send no more: the stream holds what its
	// destination did not take, up to a window.
	s.mu.Lock()
	if id := s.lastID; s.lastN > 0 {
		s.taken[id] += s.lastN
		s.lastN = 0
		if g := s.granted[id]; g > 0 && s.taken[id] == yamux.InitialWindow+g {
			notify(s.spent, id)
		}
	}
	s.mu.Unlock()
	f, err := s.Framer.ReadFrame()
	if err != nil {
		return f, err
	}
	if f.Rest > 0 {
		s.frames.Add(1)
		s.rest.Add(int64(f.Rest))
	}
	if f.Kind == mux.KindData && (len(f.Data) > 0 || f.Rest > 0) {
		s.mu.Lock()
		s.lastID, s.lastN = f.ID, len(f.Data)+f.Rest
		s.mu.Unlock()
	}
	return f, err
}

func (s *splitCount) WriteFrame(f *mux.Frame) error {
	if f.Kind == mux.KindData && f.Credit > 0 {
		s.mu.Lock()
		s.granted[f.ID] += f.Credit
		s.mu.Unlock()
	}
	return s.Framer.WriteFrame(f)
}

type written struct {
	sum [32]byte
	err error
}

// writeAsync writes n bytes of pattern seed to st in writes of chunk,
// then half-closes it, and sends what writePattern returned.
func writeAsync(st *mux.Stream, n, chunk int, seed byte) <-chan written {
	ch := make(chan written, 1)
	go func() {
		sum, err := writePattern(st, n, chunk, seed)
		st.CloseWrite()
		ch <- written{sum, err}
	}()
	return ch
}

// splitRig is a client session and a server session whose Framer splits,
// on a loopback link.
type splitRig struct {
	client, server *mux.Session
	ca             *audit
	split          *splitCount
}

func newSplitRig(t *testing.T, pipes *mux.Budget) *splitRig {
	t.Helper()
	cc, sc := tcpPair(t)
	r := &splitRig{ca: newAudit(t, cc, true), split: newSplitCount(sc)}
	r.client = ours(cc, true, r.ca, nil)
	cfg := Config(DefaultWindow)
	cfg.Pipes = pipes
	r.server = mux.New(sc, r.split, cfg)
	t.Cleanup(func() { closeBoth(r.client, r.server) })
	return r
}

// sinkTo runs st.WriteTo into one end of a TCP connection (half-closing
// it at the stream's end, as the relay does) and returns the other end.
func sinkTo(t *testing.T, st *mux.Stream) (out net.Conn, res <-chan error) {
	t.Helper()
	w, out := tcpPair(t)
	ch := make(chan error, 1)
	go func() {
		_, err := st.WriteTo(w)
		if err == nil {
			w.(*net.TCPConn).CloseWrite()
		}
		ch <- err
	}()
	t.Cleanup(func() { w.Close(); out.Close() })
	return out, ch
}

// TestSplitDelivery sends bulk data from our client to a server that
// splits long frames, the server's stream relayed into a TCP socket by
// WriteTo: every byte arrives, in order, then the end; long frames were
// split. When the destination stalls, what it has no room for waits in
// pipes while the session's budget of pipes lasts, and in memory after.
func TestSplitDelivery(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int // the sender's Write size
		stall bool
		pipes int64 // the session's budget of pipes
	}{
		{"1 MiB writes", 1 << 20, false, mux.DefaultPipes},
		{"100 KiB writes", 100 << 10, false, mux.DefaultPipes},
		{"destination stalled", 1 << 20, true, mux.DefaultPipes},
		{"destination stalled, 100 KiB writes", 100 << 10, true, mux.DefaultPipes},
		{"destination stalled, one pipe", 100 << 10, true, 1},
		{"destination stalled, no pipes", 1 << 20, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pipes := mux.NewBudget(tc.pipes)
			r := newSplitRig(t, pipes)
			a, b := openOurs(t, r.client, r.server.Accept)
			out, res := sinkTo(t, b)
			n := spliceSize
			if tc.stall {
				// Small socket buffers, so that the window, not the
				// sockets, holds the sender.
				out.(*net.TCPConn).SetReadBuffer(32 << 10)
				n = max(n, 3*DefaultWindow)
			}
			// Once one byte is out, WriteTo runs: what follows meets a
			// stream relayed to its TCP destination, not one whose
			// bytes wait for a WriteTo still to come.
			if _, err := a.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(out, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			sent := writeAsync(a, n, tc.chunk, 3)
			if tc.stall {
				// Read nothing until the sender is held by the window:
				// the destination's socket fills, what was spliced for it
				// and did not fit waits in pipes or is read back and
				// buffered, and so is what follows, up to the window.
				recv(t, "the server to take in the stream's window", r.split.spent)
			}
			got := recv(t, "the destination's bytes", readSumAsync(out))
			want := recv(t, "the sender", sent)
			if want.err != nil {
				t.Fatalf("writing: %v", want.err)
			}
			if got.err != nil || got.n != int64(n) || got.sum != want.sum {
				t.Fatalf("destination read %d bytes (%v), sum match %v; want %d bytes", got.n, got.err, got.sum == want.sum, n)
			}
			if err := recv(t, "WriteTo", res); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if r.split.frames.Load() == 0 || r.split.spliced() == 0 {
				t.Errorf("%d frames split, %d bytes spliced; want some of each", r.split.frames.Load(), r.split.spliced())
			}
			if used := pipes.Used(); used != 0 {
				t.Errorf("after the stream's end, %d pipes are still taken", used)
			}
			// A stalled stream holds up to a window (4 MiB) that its
			// destination did not take, in pipes of 1 MiB while they
			// last, each filled before the next is taken.
			if p := pipes.Peak(); tc.stall && tc.pipes > 0 && (p == 0 || p > min(tc.pipes, 4)) {
				t.Errorf("the stalled stream held %d pipes at once; want its burst in 1 to %d", p, min(tc.pipes, 4))
			}
		})
	}
}

// rawSplitServer is a server session whose Framer splits, and the raw
// connection to it, whose incoming bytes are drained.
func rawSplitServer(t *testing.T) (raw net.Conn, s *mux.Session, split *splitCount) {
	t.Helper()
	raw, sc := tcpPair(t)
	split = newSplitCount(sc)
	s = mux.New(sc, split, Config(DefaultWindow))
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, raw)
		close(drained)
	}()
	t.Cleanup(func() {
		raw.Close()
		s.Close()
		<-drained
	})
	return raw, s, split
}

func frame(typ yamux.Type, flags yamux.Flags, id uint32, payload []byte) []byte {
	n := uint32(len(payload))
	if typ != yamux.TypeData {
		n = 0
	}
	return append(yamux.Header{Type: typ, Flags: flags, StreamID: id, Length: n}.Append(nil), payload...)
}

func open1() []byte { return frame(yamux.TypeWindowUpdate, yamux.FlagSYN, 1, nil) }

// TestSplitRawWire feeds a splitting server long Data frames written by
// hand: the end that comes on the frame itself, a frame for no stream, a
// link cut inside a frame, and a stream read with Read rather than
// relayed.
func TestSplitRawWire(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)

	t.Run("end on the long frame", func(t *testing.T) {
		raw, s, split := rawSplitServer(t)
		raw.Write(append(open1(), frame(yamux.TypeData, 0, 1, []byte("x"))...))
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		out, res := sinkTo(t, st)
		// Once "x" is out, WriteTo is running: the long frame is spliced.
		var x [1]byte
		if _, err := io.ReadFull(out, x[:]); err != nil {
			t.Fatal(err)
		}
		raw.Write(frame(yamux.TypeData, yamux.FlagFIN, 1, long))
		got := recv(t, "the destination's bytes", readSumAsync(out))
		if got.err != nil || got.n != int64(len(long)) || got.sum != sha(long) {
			t.Fatalf("destination read %d bytes (%v); want the %d sent, then the end", got.n, got.err, len(long))
		}
		if err := recv(t, "WriteTo", res); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		if split.frames.Load() != 1 || split.spliced() == 0 {
			t.Errorf("%d frames split, %d bytes spliced; want 1, and some spliced", split.frames.Load(), split.spliced())
		}
	})

	t.Run("long frame for no stream", func(t *testing.T) {
		raw, s, split := rawSplitServer(t)
		var w []byte
		w = append(w, frame(yamux.TypeData, 0, 99, long)...)
		w = append(w, open1()...)
		w = append(w, frame(yamux.TypeData, yamux.FlagFIN, 1, []byte("hello"))...)
		raw.Write(w)
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "hello" {
			t.Fatalf("stream 1 read %q, %v; want hello and the end", b, err)
		}
		if split.rest.Load() == 0 {
			t.Errorf("the frame for stream 99 was not split")
		}
	})

	t.Run("read with Read", func(t *testing.T) {
		raw, s, split := rawSplitServer(t)
		raw.Write(append(open1(), frame(yamux.TypeData, yamux.FlagFIN, 1, long)...))
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		within(t, "reading the stream", func() { b, err = io.ReadAll(st) })
		if err != nil || !bytes.Equal(b, long) {
			t.Fatalf("read %d bytes, %v; want the %d sent and the end", len(b), err, len(long))
		}
		if split.frames.Load() != 1 || split.spliced() != 0 {
			t.Errorf("%d frames split, %d bytes spliced; want 1, and none spliced with no destination", split.frames.Load(), split.spliced())
		}
	})

	t.Run("link cut inside a long frame", func(t *testing.T) {
		raw, s, _ := rawSplitServer(t)
		w := append(open1(), frame(yamux.TypeData, 0, 1, long)...)
		raw.Write(w[:len(w)-len(long)/2])
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_, res := sinkTo(t, st)
		raw.Close()
		if err := recv(t, "WriteTo", res); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("WriteTo after the link was cut inside a frame: %v; want an error", err)
		}
		<-s.Done()
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "cut short") {
			t.Errorf("session ended with %v; want the frame cut short", err)
		}
	})
}

func sha(b []byte) [32]byte {
	s, _, _ := readSum(bytes.NewReader(b))
	return s
}

// TestSplitDestinationFails resets the destination of a stream whose
// frames are spliced: WriteTo fails, and the session and its other
// streams go on.
func TestSplitDestinationFails(t *testing.T) {
	r := newSplitRig(t, nil)
	a, b := openOurs(t, r.client, r.server.Accept)
	out, res := sinkTo(t, b)
	writing := feedForever(a)
	if _, err := io.ReadFull(out, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	out.(*net.TCPConn).SetLinger(0)
	out.Close()
	err := recv(t, "WriteTo", res)
	if err == nil {
		t.Fatal("WriteTo into a reset destination returned nil")
	}
	b.Abort(err) // as the relay does
	recv(t, "the writer to fail", writing)

	a2, b2 := openOurs(t, r.client, r.server.Accept)
	if _, err := a2.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var p [4]byte
	within(t, "the second stream", func() { _, err = io.ReadFull(b2, p[:]) })
	if err != nil || string(p[:]) != "ping" {
		t.Fatalf("second stream read %q, %v", p, err)
	}
}

// TestSplitWaitHoldsNoPipe: a link whose read loop waits inside a long
// frame for the rest of its bytes holds no pipe meanwhile (a DP may have
// thousands of links, and pipes cost descriptors and pipe pages).
func TestSplitWaitHoldsNoPipe(t *testing.T) {
	const links = 20
	type rig struct {
		raw net.Conn
		out net.Conn
	}
	rigs := make([]rig, links)
	for i := range rigs {
		raw, s, _ := rawSplitServer(t)
		raw.Write(open1())
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := sinkTo(t, st)
		rigs[i] = rig{raw, out}
	}
	before := openFDs(t)
	for _, r := range rigs {
		// A header for 100 KiB and the first 1000 bytes of it: the read
		// loop delivers those and waits for the rest.
		w := frame(yamux.TypeData, 0, 1, make([]byte, 100<<10))
		r.raw.Write(w[:yamux.HeaderLen+1000])
	}
	for _, r := range rigs {
		if _, err := io.ReadFull(r.out, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if extra := openFDs(t) - before; extra >= links {
		t.Errorf("%d links waiting inside a frame hold %d more descriptors, want fewer than %d (no pipe each)", links, extra, links)
	}
}

// TestSplitPipesThenRead: WriteTo returns (a read deadline) while bytes
// wait for its destination in pipes; they move to the stream's buffer,
// and Read returns them after what the destination got, in order.
func TestSplitPipesThenRead(t *testing.T) {
	pipes := mux.NewBudget(mux.DefaultPipes)
	r := newSplitRig(t, pipes)
	a, b := openOurs(t, r.client, r.server.Accept)
	w, out := tcpPair(t)
	defer w.Close()
	defer out.Close()
	out.(*net.TCPConn).SetReadBuffer(32 << 10)
	res := make(chan error, 1)
	go func() {
		_, err := b.WriteTo(w)
		res <- err
	}()
	n := 3 * DefaultWindow
	sent := writeAsync(a, n, 1<<20, 5)
	// The destination's sockets take a few MiB at most: then the server
	// holds a window, in pipes, and the sender waits for credit.
	recv(t, "the server to take in the stream's window", r.split.spent)
	if pipes.Used() == 0 {
		t.Fatal("the stalled stream holds no pipe")
	}
	b.SetReadDeadline(time.Unix(1, 0))
	prefix := make(chan []byte, 1)
	go func() {
		p, _ := io.ReadAll(out)
		prefix <- p
	}()
	if err := recv(t, "WriteTo", res); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteTo returned %v, want the read deadline's error", err)
	}
	if used := pipes.Used(); used != 0 {
		t.Errorf("WriteTo returned with %d pipes still taken", used)
	}
	w.Close()
	head := recv(t, "the destination's bytes", prefix)
	b.SetReadDeadline(time.Time{})
	sum, got, err := readSum(io.MultiReader(bytes.NewReader(head), b))
	want := recv(t, "the sender", sent)
	if want.err != nil {
		t.Fatalf("writing: %v", want.err)
	}
	if err != nil || got != int64(n) || sum != want.sum {
		t.Fatalf("read %d bytes (%d through the destination, %v), sum match %v; want %d", got, len(head), err, sum == want.sum, n)
	}
}

// TestSplitFromHashicorp: a plain hashicorp/yamux client sends a burst to
// a stream of ours whose destination, a TCP socket, is not being read:
// what does not fit waits in the stream's queue (pipes, while the budget
// lasts), and once the destination reads, every byte arrives in order,
// then the end.
func TestSplitFromHashicorp(t *testing.T) {
	hc, sc := tcpPair(t)
	pipes := mux.NewBudget(mux.DefaultPipes)
	cfg := Config(DefaultWindow)
	cfg.Pipes = pipes
	server := mux.New(sc, newSplitCount(sc), cfg)
	client := hcSession(t, hc, false, hcConfig())
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	hs, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st, err := server.Accept()
	if err != nil {
		t.Fatal(err)
	}
	out, res := sinkTo(t, st)
	out.(*net.TCPConn).SetReadBuffer(32 << 10)
	// Within hashicorp's first window, so its writes need no grant while
	// nobody reads the destination.
	n := DefaultWindow * 3 / 4
	want, err := writePattern(hs, n, 64<<10, 7)
	if err != nil {
		t.Fatal(err)
	}
	hs.Close() // hashicorp's half-close: FIN
	got := recv(t, "the destination's bytes", readSumAsync(out))
	if got.err != nil || got.n != int64(n) || got.sum != want {
		t.Fatalf("destination read %d bytes (%v), sum match %v; want %d", got.n, got.err, got.sum == want, n)
	}
	if err := recv(t, "WriteTo", res); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if used := pipes.Used(); used != 0 {
		t.Errorf("after the stream's end, %d pipes are still taken", used)
	}
}
