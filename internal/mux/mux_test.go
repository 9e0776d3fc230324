package mux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"rtcp/internal/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jsonFramer is the smallest Framer: one JSON object per Frame. Bytes it
// cannot parse are a *ProtocolError, as a real wire adapter reports them.
type jsonFramer struct {
	dec *json.Decoder
	bw  *bufio.Writer
	enc *json.Encoder
	f   Frame
	sem Semantics // the wire's, as a test sets it
}

func (fr *jsonFramer) Semantics() Semantics { return fr.sem }

func newJSONFramer(c net.Conn) *jsonFramer {
	bw := bufio.NewWriter(c)
	return &jsonFramer{dec: json.NewDecoder(c), bw: bw, enc: json.NewEncoder(bw)}
}

func (fr *jsonFramer) ReadFrame() (*Frame, error) {
	fr.f = Frame{}
	if err := fr.dec.Decode(&fr.f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &ProtocolError{Msg: "bad frame: " + err.Error()}
		}
		return nil, err
	}
	return &fr.f, nil
}

func (fr *jsonFramer) WriteFrame(f *Frame) error { return fr.enc.Encode(f) }
func (fr *jsonFramer) Flush() error              { return fr.bw.Flush() }

// link is two sessions joined by an in-memory pipe; ca and cb are the raw
// ends, for tests that cut or speak on the wire themselves.
type link struct {
	a, b   *Session
	ca, cb net.Conn
}

func newLink(t testing.TB, cfgA, cfgB Config) *link {
	t.Helper()
	return newWireLink(t, Semantics{}, cfgA, cfgB)
}

// newWireLink is newLink on a wire whose Framers say sem.
func newWireLink(t testing.TB, sem Semantics, cfgA, cfgB Config) *link {
	t.Helper()
	ca, cb := net.Pipe()
	l := &link{ca: ca, cb: cb}
	frA, frB := newJSONFramer(ca), newJSONFramer(cb)
	frA.sem, frB.sem = sem, sem
	l.a = New(ca, frA, cfgA)
	l.b = New(cb, frB, cfgB)
	return l
}

func (l *link) close() {
	l.a.Close()
	l.b.Close()
}

// open opens a stream from a and returns both of its ends.
func (l *link) open(t testing.TB) (fromA, atB *Stream) {
	t.Helper()
	type res struct {
		st  *Stream
		err error
	}
	ch := make(chan res, 1)
	go func() {
		st, err := l.b.Accept()
		ch <- res{st, err}
	}()
	fromA, err := l.a.Open(context.Background(), "client", "192.0.2.1:1234")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	if r.st.ID() != fromA.ID() {
		t.Fatalf("the two ends disagree on the ID: %d and %d", fromA.ID(), r.st.ID())
	}
	return fromA, r.st
}

// buffered returns the bytes st holds for its reader, and the capacity of
// the buffer holding them.
func buffered(st *Stream) (n, capacity int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.rbuf) - st.roff, cap(st.rbuf)
}

// pattern is the byte at offset i of every test stream.
func pattern(i int64) byte { return byte(i % 251) }

// writePattern writes the pattern from offset off, in writes of size
// chunk, until total bytes (or an error); it counts what was written.
func writePattern(w io.Writer, off, total int64, chunk int, count *atomic.Int64) error {
	buf := make([]byte, chunk)
	for off < total {
		n := min(int64(chunk), total-off)
		for i := range n {
			buf[i] = pattern(off + i)
		}
		k, err := w.Write(buf[:n])
		off += int64(k)
		if count != nil {
			count.Add(int64(k))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkPattern reads r to its end and checks every byte; it returns how
// many bytes it read and the error that ended it (nil for io.EOF).
func checkPattern(t testing.TB, r io.Reader, off int64) (int64, error) {
	t.Helper()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		for i := range k {
			if buf[i] != pattern(off+n+int64(i)) {
				t.Fatalf("byte %d is %d, want %d", off+n+int64(i), buf[i], pattern(off+n+int64(i)))
			}
		}
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func flowConfig(window int) Config {
	return Config{FlowControl: true, Window: window, PeerWindow: window, HalfClose: true}
}

// TestFlowControl is the proof the issue asks for: stream A's reader stops,
// stream B on the same link still carries megabytes, and what A holds
// stays within its window the whole time. Then A resumes and loses nothing.
func TestFlowControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 64 << 10
		l := newLink(t, flowConfig(window), flowConfig(window))
		defer l.close()
		aOut, aIn := l.open(t)
		bOut, bIn := l.open(t)

		var wroteA atomic.Int64
		doneA := make(chan error, 1)
		go func() { doneA <- writePattern(aOut, 0, 1<<40, 1<<10, &wroteA) }()
		synctest.Wait() // A's writer has used its credit and blocks

		if got := wroteA.Load(); got != window {
			t.Fatalf("A's writer got %d bytes out with nobody reading, want exactly the window %d", got, window)
		}
		if n, c := buffered(aIn); n > window || c > 2*window {
			t.Fatalf("A holds %d bytes in a buffer of %d, want at most the window %d", n, c, window)
		}

		const total = 8 << 20
		go func() {
			writePattern(bOut, 0, total, 32<<10, nil)
			bOut.CloseWrite()
		}()
		n, err := checkPattern(t, bIn, 0)
		if err != nil || n != total {
			t.Fatalf("B carried %d bytes (%v) while A was stalled, want %d", n, err, total)
		}
		synctest.Wait()
		if got := wroteA.Load(); got != window {
			t.Fatalf("A's writer moved to %d bytes while stalled, want %d", got, window)
		}
		if n, c := buffered(aIn); n > window || c > 2*window {
			t.Fatalf("after B's %d bytes, A holds %d bytes in a buffer of %d, want at most %d", total, n, c, window)
		}

		// A's reader comes back: read 1 MiB, then the writer stops and the
		// rest drains. Every byte must arrive, in order.
		got, err := checkPattern(t, io.LimitReader(aIn, 1<<20), 0)
		if err != nil || got != 1<<20 {
			t.Fatalf("resumed A: read %d bytes, %v", got, err)
		}
		aOut.Close()
		if err := <-doneA; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("A's writer ended with %v, want net.ErrClosed", err)
		}
		rest, err := checkPattern(t, aIn, 1<<20)
		if err != nil {
			t.Fatalf("draining A: %v", err)
		}
		if sum := 1<<20 + rest; sum != wroteA.Load() {
			t.Fatalf("A's reader got %d bytes, the writer wrote %d", sum, wroteA.Load())
		}
		bIn.Close()
		aIn.Close()
	})
}

// TestNoFlowControlBackpressure is the plain-peer fallback: without
// credit, a stream whose reader falls behind by MaxBuffer stops the link
// being read, so TCP (here a net.Pipe) holds the writer back; nothing is
// cut, and when the reader comes back every byte arrives.
func TestNoFlowControlBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxBuf = 64 << 10
		l := newLink(t, Config{}, Config{MaxBuffer: maxBuf})
		defer l.close()
		out, in := l.open(t)

		var wrote atomic.Int64
		done := make(chan error, 1)
		go func() { done <- writePattern(out, 0, 8<<20, 8<<10, &wrote) }()
		synctest.Wait() // the writer blocks: nobody reads the link
		if n, _ := buffered(in); n < maxBuf || n > maxBuf+16<<10 {
			t.Fatalf("the stalled stream holds %d bytes, want MaxBuffer %d and at most one frame more", n, maxBuf)
		}
		if w := wrote.Load(); w >= 8<<20 {
			t.Fatalf("the writer got all %d bytes out with nobody reading", w)
		}
		time.Sleep(time.Hour) // a link with one stream waits as long as it takes
		synctest.Wait()
		n, err := checkPattern(t, io.LimitReader(in, 8<<20), 0)
		if err != nil || n != 8<<20 {
			t.Fatalf("the reader came back after an hour and got %d bytes, %v; want all 8 MiB", n, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("writer: %v", err)
		}
		if err := l.b.Err(); err != nil {
			t.Fatalf("the link ended: %v", err)
		}
		out.Close()
		in.Close()
	})
}

// TestNoFlowControlStall bounds what a stalled stream costs the others on
// its link: after StallTimeout without progress it is cut, with a reason
// that names the remedy, on both ends; its reader still gets what it
// holds; the other stream is untouched. Progress, however slow, is no
// stall.
func TestNoFlowControlStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxBuf = 64 << 10
		logs, logger := flowtest.NewLogs()
		l := newLink(t, Config{}, Config{MaxBuffer: maxBuf, StallTimeout: time.Minute, Logger: logger})
		defer l.close()
		aOut, aIn := l.open(t)
		bOut, bIn := l.open(t)

		var wrote atomic.Int64
		done := make(chan error, 1)
		go func() { done <- writePattern(aOut, 0, 1<<40, 8<<10, &wrote) }()
		synctest.Wait()

		// A reader that takes a little every 50 s is slow, not stalled.
		var got int64
		for range 3 {
			time.Sleep(50 * time.Second)
			n, err := checkPattern(t, io.LimitReader(aIn, 4<<10), got)
			if err != nil || n != 4<<10 {
				t.Fatalf("slow reader: %d bytes, %v", n, err)
			}
			got += n
			synctest.Wait()
		}
		if err := l.b.Err(); err != nil {
			t.Fatalf("the link ended: %v", err)
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		err := <-done
		var ae *AbortError
		if !errors.As(err, &ae) || !strings.Contains(ae.Reason, "stall timeout") {
			t.Fatalf("the writer of the stalled stream got %v, want an AbortError naming the stall timeout", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" {
			t.Errorf("write error %#v is not a *net.OpError for write", err)
		}
		if cuts := logs.Find(slog.LevelWarn, "rtcp: session cut"); len(cuts) == 0 || !strings.Contains(cuts[0].Attrs["reason"], "stall timeout") {
			t.Errorf("the cut was not logged with its reason: %v", logs.AtLeast(slog.LevelDebug))
		}

		// The reader gets every byte that was accepted, then the error.
		n, err := checkPattern(t, aIn, got)
		if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "stall timeout") {
			t.Fatalf("reader of the cut stream: %d bytes then %v, want an error naming the stall timeout", n, err)
		}
		if n < maxBuf-got {
			t.Errorf("reader got %d more bytes, less than what was buffered", n)
		}

		// The other stream is untouched, both ways.
		for _, dir := range []struct {
			name string
			w, r *Stream
		}{{"a to b", bOut, bIn}, {"b to a", bIn, bOut}} {
			msg := []byte("still here: " + dir.name)
			if _, err := dir.w.Write(msg); err != nil {
				t.Fatalf("%s: Write on the other stream: %v", dir.name, err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(dir.r, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%s: the other stream read %q, %v", dir.name, got, err)
			}
		}
		if err := l.a.Err(); err != nil {
			t.Fatalf("the link ended: %v", err)
		}
		aOut.Close()
		aIn.Close()
		bOut.Close()
		bIn.Close()
	})
}

func TestFlowControlPeerOverrunsWindow(t *testing.T) {
	// A sender that ignores the window (here: it believes the window is
	// larger than it is) gets its stream aborted, not the link.
	l := newLink(t, flowConfig(1<<20), Config{FlowControl: true, Window: 16 << 10, PeerWindow: 1 << 20})
	defer l.close()
	out, in := l.open(t)
	err := writePattern(out, 0, 1<<40, 4<<10, nil)
	if err == nil || !strings.Contains(err.Error(), "flow-control window") {
		t.Fatalf("overrunning writer got %v, want an abort naming the flow-control window", err)
	}
	if _, err := checkPattern(t, in, 0); err == nil || !strings.Contains(err.Error(), "flow-control window") {
		t.Fatalf("overrun reader got %v", err)
	}
	if err := l.b.Err(); err != nil {
		t.Fatalf("the link ended: %v", err)
	}
	out.Close()
	in.Close()
}

func TestHalfClose(t *testing.T) {
	l := newLink(t, Config{HalfClose: true}, Config{HalfClose: true})
	defer l.close()
	for _, first := range []string{"opener", "acceptor"} {
		t.Run(first+" first", func(t *testing.T) {
			x, y := l.open(t)
			if first == "acceptor" {
				x, y = y, x
			}
			if _, err := x.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			if err := x.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			if _, err := x.Write([]byte("more")); !errors.Is(err, ErrWriteClosed) {
				t.Errorf("Write after CloseWrite: %v, want ErrWriteClosed", err)
			}
			got, err := io.ReadAll(y)
			if err != nil || string(got) != "request" {
				t.Fatalf("read %q, %v; want the request then io.EOF", got, err)
			}
			// The other direction still works.
			if _, err := y.Write([]byte("response")); err != nil {
				t.Fatalf("Write back after the peer's CloseWrite: %v", err)
			}
			if err := y.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(x)
			if err != nil || string(got) != "response" {
				t.Fatalf("read back %q, %v", got, err)
			}
			x.Close()
			y.Close()
		})
	}
	// Both directions ended: neither side keeps the streams.
	if n := l.a.NumStreams() + l.b.NumStreams(); n != 0 {
		t.Errorf("%d streams still open after both half-closes", n)
	}
}

func TestCloseWriteNeedsPeerSupport(t *testing.T) {
	l := newLink(t, Config{}, Config{})
	defer l.close()
	x, y := l.open(t)
	if err := x.CloseWrite(); !errors.Is(err, ErrNoHalfClose) {
		t.Fatalf("CloseWrite toward a plain peer: %v, want ErrNoHalfClose", err)
	}
	x.Close()
	y.Close()
}

func TestCloseAndAbort(t *testing.T) {
	l := newLink(t, Config{}, Config{})
	defer l.close()

	t.Run("Close gives io.EOF", func(t *testing.T) {
		x, y := l.open(t)
		x.Write([]byte("bye"))
		x.Close()
		got, err := io.ReadAll(y)
		if err != nil || string(got) != "bye" {
			t.Fatalf("read %q, %v; want the data then io.EOF", got, err)
		}
		if _, err := y.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("Read after the peer's Close: %v, want io.EOF itself", err)
		}
		if _, err := y.Write([]byte("x")); !errors.Is(err, ErrPeerClosed) {
			t.Errorf("Write after the peer's Close: %v, want ErrPeerClosed", err)
		}
		y.Close()
	})

	t.Run("Abort gives an error", func(t *testing.T) {
		x, y := l.open(t)
		x.Write([]byte("partial"))
		x.Abort(errors.New("disk on fire"))
		got, err := io.ReadAll(y)
		if string(got) != "partial" {
			t.Errorf("read %q before the abort, want %q", got, "partial")
		}
		var ae *AbortError
		if !errors.As(err, &ae) || ae.Reason != "disk on fire" || errors.Is(err, io.EOF) {
			t.Fatalf("Read after the peer's Abort: %v, want AbortError(disk on fire), not io.EOF", err)
		}
		if _, err := y.Write([]byte("x")); !errors.As(err, &ae) {
			t.Errorf("Write after the peer's Abort: %v, want the AbortError", err)
		}
		y.Close()
	})

	t.Run("own Close", func(t *testing.T) {
		x, y := l.open(t)
		x.Close()
		if err := x.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := x.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
		if _, err := x.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close: %v, want net.ErrClosed", err)
		}
		y.Close()
	})
}

// TestLinkLoss: when the link dies, every stream on it fails with an error
// (never io.EOF), and so do Accept and Open.
func TestLinkLoss(t *testing.T) {
	l := newLink(t, Config{Name: "link to test"}, Config{Name: "link from test"})
	defer l.close()
	x1, y1 := l.open(t)
	x2, y2 := l.open(t)
	y1.Write([]byte("in flight"))
	io.ReadFull(x1, make([]byte, len("in flight")))

	blocked := make(chan error, 1)
	go func() {
		_, err := y2.Read(make([]byte, 10))
		blocked <- err
	}()
	l.ca.Close() // the wire is cut under a

	for name, st := range map[string]*Stream{"x1": x1, "x2": x2, "y1": y1, "y2": y2} {
		var err error
		if name == "y2" {
			err = <-blocked // a blocked Read wakes up
		} else {
			_, err = st.Read(make([]byte, 10))
		}
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: Read after link loss: %v, want an error that is not io.EOF", name, err)
		} else if !strings.Contains(err.Error(), "link") {
			t.Errorf("%s: Read error %q does not name the link", name, err)
		}
		if _, err := st.Write([]byte("x")); err == nil {
			t.Errorf("%s: Write after link loss succeeded", name)
		}
		st.Close()
	}
	<-l.b.Done()
	if err := l.b.Err(); err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "lost") {
		t.Errorf("b.Err() = %v, want a lost-link error that is not io.EOF", err)
	}
	if _, err := l.b.Accept(); err == nil {
		t.Error("Accept after link loss succeeded")
	}
	if _, err := l.b.Open(context.Background(), "", ""); err == nil {
		t.Error("Open after link loss succeeded")
	}
}

// halves is a link's connection whose two directions are separate pipes,
// as across a network: one direction can end while the other still waits.
type halves struct {
	net.Conn          // read from
	w        net.Conn // written to
}

func (h halves) Write(p []byte) (int, error)        { return h.w.Write(p) }
func (h halves) SetWriteDeadline(t time.Time) error { return h.w.SetWriteDeadline(t) }

func (h halves) Close() error {
	h.w.Close()
	return h.Conn.Close()
}

// TestLinkLossIsACut: however the link's connection fails, its streams
// fail with an error that a relay takes for a cut (relay.Cut), never for
// a quiet close. A net.Pipe says io.ErrClosedPipe both when its own end
// was closed and when a write finds its peer's end closed; a link lost
// that way once reached its streams as that error, and a relay (the DP's)
// passed the lost link on to the stream's other side as a clean end.
func TestLinkLossIsACut(t *testing.T) {
	for _, cfg := range []struct {
		name string
		cfg  Config
	}{
		{"queued writes", Config{Name: "link under test"}},
		{"direct writes", Config{Name: "link under test", FlowControl: true, Window: 64 << 10, PeerWindow: 64 << 10}},
	} {
		for _, tt := range []struct {
			name string
			fail func(ours, theirs halves)
		}{
			// The peer closed: the session's next write fails (with
			// io.ErrClosedPipe) before a read could tell it.
			{"a write finds the peer gone", func(ours, theirs halves) { theirs.Conn.Close() }},
			// The peer closed: the session's read ends (io.EOF).
			{"a read finds the peer gone", func(ours, theirs halves) { theirs.w.Close() }},
			// Its owner closed the connection under the session: the
			// read fails with io.ErrClosedPipe.
			{"closed under the session", func(ours, theirs halves) { ours.Close() }},
		} {
			t.Run(cfg.name+"/"+tt.name, func(t *testing.T) {
				in, peerOut := net.Pipe()
				out, peerIn := net.Pipe()
				ours, theirs := halves{in, out}, halves{peerIn, peerOut}
				defer theirs.Close()
				s := New(ours, newJSONFramer(ours), cfg.cfg)
				defer s.Close()
				peer := newJSONFramer(theirs)
				opened := make(chan *Stream, 1)
				go func() {
					st, err := s.Open(context.Background(), "client", "")
					if err != nil {
						t.Errorf("Open: %v", err)
					}
					opened <- st
				}()
				if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen {
					t.Fatalf("peer read %+v, %v; want an Open", f, err)
				}
				peer.WriteFrame(&Frame{Kind: KindAck, ID: 1})
				peer.Flush()
				st := <-opened
				if st == nil {
					return
				}

				tt.fail(ours, theirs)
				if _, err := st.Write([]byte("lost")); err != nil && !relayCut(err) {
					t.Errorf("Write as the link fails: %v, which a relay takes for a quiet close", err)
				}
				if _, err := st.Read(make([]byte, 1)); !relayCut(err) {
					t.Errorf("Read after the link failed: %v, which a relay takes for a quiet close", err)
				}
				if _, err := st.Write([]byte("lost")); !relayCut(err) {
					t.Errorf("Write after the link failed: %v, which a relay takes for a quiet close", err)
				}
				<-s.Done()
				if err := s.Err(); !relayCut(err) || !strings.Contains(err.Error(), "lost") {
					t.Errorf("the session ended with %v, want a lost link", err)
				}
			})
		}
	}
}

func TestOpenRefused(t *testing.T) {
	t.Run("accepts nothing", func(t *testing.T) {
		l := newLink(t, Config{}, Config{AcceptBacklog: -1})
		defer l.close()
		_, err := l.a.Open(context.Background(), "", "")
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, "accepts no sessions") {
			t.Fatalf("Open: %v, want a RefusedError", err)
		}
		if err := l.a.Err(); err != nil {
			t.Fatalf("a refusal ended the link: %v", err)
		}
	})
	t.Run("manual ack with a reason", func(t *testing.T) {
		l := newLink(t, Config{}, Config{ManualAck: true})
		defer l.close()
		go func() {
			st, err := l.b.Accept()
			if err == nil {
				st.Ack(errors.New("no printer called that"))
			}
		}()
		_, err := l.a.Open(context.Background(), "", "")
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != "no printer called that" {
			t.Fatalf("Open: %v, want RefusedError(no printer called that)", err)
		}
	})
	t.Run("backlog full", func(t *testing.T) {
		l := newLink(t, Config{}, Config{AcceptBacklog: 1})
		defer l.close()
		st, err := l.a.Open(context.Background(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, err = l.a.Open(context.Background(), "", "")
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != ErrBacklog.Error() {
			t.Fatalf("second Open with nobody accepting: %v, want RefusedError(%v)", err, ErrBacklog)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		l := newLink(t, Config{}, Config{ManualAck: true})
		defer l.close()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			st, err := l.b.Accept()
			cancel() // the opener gives up before the answer
			if err == nil {
				<-st.Session().Done()
			}
		}()
		if _, err := l.a.Open(ctx, "", ""); !errors.Is(err, context.Canceled) {
			t.Fatalf("Open: %v, want context.Canceled", err)
		}
	})
}

// TestAckWithReasonIsSuccess: only X = -1 refuses; a plain peer that fills
// in R on success still opens a session.
func TestAckWithReasonIsSuccess(t *testing.T) {
	ca, cb := net.Pipe()
	s := New(ca, newJSONFramer(ca), Config{})
	defer s.Close()
	defer cb.Close()
	peer := newJSONFramer(cb)
	opened := make(chan error, 1)
	var st *Stream
	go func() {
		var err error
		st, err = s.Open(context.Background(), "", "")
		opened <- err
	}()
	if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen {
		t.Fatalf("peer read %v, %v; want an Open", f, err)
	}
	peer.WriteFrame(&Frame{Kind: KindAck, ID: 0, Reason: "OK"})
	peer.Flush()
	if err := <-opened; err != nil {
		t.Fatalf("Open answered by Ack X=0 R=OK: %v, want success", err)
	}
	if st.ID() != 0 {
		t.Errorf("stream ID %d, want 0", st.ID())
	}
	go st.Close()
	if f, err := peer.ReadFrame(); err != nil || f.Kind != KindClose || f.ID != 0 {
		t.Fatalf("peer read %+v, %v; want Close of 0", f, err)
	}
}

// TestSentOpen: an open written before the session started (a client's
// Connect sent with its handshake) takes the peer's first answer, even
// one that waited in the Framer before New, with the Data behind it; an
// Open after it takes the next answer.
func TestSentOpen(t *testing.T) {
	// early is a session whose Framer holds answer already.
	early := func(t *testing.T, answer ...*Frame) (*Session, *jsonFramer, net.Conn) {
		var pre bytes.Buffer
		enc := json.NewEncoder(&pre)
		for _, f := range answer {
			enc.Encode(f)
		}
		ca, cb := net.Pipe()
		bw := bufio.NewWriter(ca)
		fr := &jsonFramer{dec: json.NewDecoder(io.MultiReader(&pre, ca)), bw: bw, enc: json.NewEncoder(bw)}
		s := New(ca, fr, Config{Sent: &SentOpen{Name: "printer"}})
		t.Cleanup(func() {
			cb.Close()
			s.Close()
		})
		return s, newJSONFramer(cb), cb
	}
	t.Run("answered", func(t *testing.T) {
		s, peer, _ := early(t, &Frame{Kind: KindAck, ID: 5}, &Frame{Kind: KindData, ID: 5, Data: []byte("hi")})
		st, err := s.AwaitSent(context.Background())
		if err != nil {
			t.Fatalf("AwaitSent: %v", err)
		}
		if st.ID() != 5 || st.Name() != "printer" {
			t.Errorf("stream %d %q, want 5 \"printer\"", st.ID(), st.Name())
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q, %v; want \"hi\"", buf, err)
		}
		opened := make(chan *Stream, 1)
		go func() {
			st, err := s.Open(context.Background(), "second", "")
			if err != nil {
				t.Errorf("Open after the sent one: %v", err)
			}
			opened <- st
		}()
		if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen || f.Name != "second" {
			t.Fatalf("peer read %+v, %v; want the second Open", f, err)
		}
		peer.WriteFrame(&Frame{Kind: KindAck, ID: 6})
		peer.Flush()
		if st2 := <-opened; st2 == nil || st2.ID() != 6 {
			t.Fatalf("second stream %v, want ID 6", st2)
		}
	})
	t.Run("refused", func(t *testing.T) {
		s, _, _ := early(t, &Frame{Kind: KindAck, ID: -1, Reason: "no printer here"})
		_, err := s.AwaitSent(context.Background())
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != "no printer here" {
			t.Fatalf("AwaitSent: %v, want RefusedError(no printer here)", err)
		}
		if err := s.Err(); err != nil {
			t.Errorf("the refusal ended the session: %v", err)
		}
	})
	t.Run("link ends", func(t *testing.T) {
		s, _, cb := early(t)
		cb.Close() // the peer hangs up before it answers
		if _, err := s.AwaitSent(context.Background()); err == nil {
			t.Fatal("AwaitSent on a session that ended: no error")
		}
	})
	t.Run("answered, then link ends", func(t *testing.T) {
		// The Ack, the Data and the end of the link all came before
		// AwaitSent: the stream keeps the bytes, then reports the end.
		s, _, cb := early(t, &Frame{Kind: KindAck, ID: 5}, &Frame{Kind: KindData, ID: 5, Data: []byte("hi")})
		cb.Close()
		<-s.Done()
		st, err := s.AwaitSent(context.Background())
		if err != nil {
			t.Fatalf("AwaitSent: %v", err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q, %v; want \"hi\"", buf, err)
		}
		if n, err := st.Read(buf); err == nil {
			t.Fatalf("read %d bytes after the link ended, want an error", n)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		// The opener gives up before the answer: the stream that the
		// answer opens is aborted, and a later Open still takes the
		// answer after it.
		s, peer, _ := early(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.AwaitSent(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("AwaitSent: %v, want context.Canceled", err)
		}
		peer.WriteFrame(&Frame{Kind: KindAck, ID: 5})
		peer.Flush()
		if f, err := peer.ReadFrame(); err != nil || f.Kind != KindClose || f.ID != 5 || !f.Abort {
			t.Fatalf("peer read %+v, %v; want an abort of 5", f, err)
		}
		opened := make(chan *Stream, 1)
		go func() {
			st, err := s.Open(context.Background(), "second", "")
			if err != nil {
				t.Errorf("Open after the abandoned one: %v", err)
			}
			opened <- st
		}()
		if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen || f.Name != "second" {
			t.Fatalf("peer read %+v, %v; want the second Open", f, err)
		}
		peer.WriteFrame(&Frame{Kind: KindAck, ID: 6})
		peer.Flush()
		if st := <-opened; st == nil || st.ID() != 6 || st.Name() != "second" {
			t.Fatalf("second stream %v, want ID 6 \"second\"", st)
		}
	})
	t.Run("nothing sent", func(t *testing.T) {
		l := newLink(t, Config{}, Config{})
		defer l.close()
		if _, err := l.a.AwaitSent(context.Background()); err == nil {
			t.Fatal("AwaitSent with no Config.Sent: no error")
		}
	})
}

// TestUnknownSession: Data for a session that does not exist is answered
// with an abort of that session only.
func TestUnknownSession(t *testing.T) {
	ca, cb := net.Pipe()
	s := New(ca, newJSONFramer(ca), Config{})
	defer s.Close()
	defer cb.Close()
	peer := newJSONFramer(cb)
	peer.WriteFrame(&Frame{Kind: KindData, ID: 42, Data: []byte("hello?")})
	peer.Flush()
	f, err := peer.ReadFrame()
	if err != nil || f.Kind != KindClose || f.ID != 42 || !f.Abort || !strings.Contains(f.Reason, "no session 42") {
		t.Fatalf("answer to Data for an unknown session: %+v, %v", f, err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the link ended: %v", err)
	}
}

// TestProtocolErrorTellsPeer: bytes the framer cannot parse end the link,
// and the peer is told why in a Close of the whole link.
func TestProtocolErrorTellsPeer(t *testing.T) {
	ca, cb := net.Pipe()
	s := New(ca, newJSONFramer(ca), Config{Name: "link under test"})
	defer s.Close()
	defer cb.Close()
	go cb.Write([]byte("garbage\n"))
	f, err := newJSONFramer(cb).ReadFrame()
	if err != nil || f.Kind != KindClose || f.ID != -1 || !f.Abort {
		t.Fatalf("peer read %+v, %v; want a Close of the whole link", f, err)
	}
	for _, want := range []string{"protocol error", "link under test", "bad frame"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q does not say %q", f.Reason, want)
		}
	}
	<-s.Done()
	var pe *ProtocolError
	if !errors.As(s.Err(), &pe) {
		t.Errorf("session error %v, want a *ProtocolError", s.Err())
	}
}

func TestPeerClosesLink(t *testing.T) {
	l := newLink(t, Config{}, Config{Name: "b's link"})
	defer l.close()
	x, y := l.open(t)
	l.a.Abort(errors.New("maintenance"))
	_, err := y.Read(make([]byte, 1))
	var pc *PeerClosedError
	if !errors.As(err, &pc) || pc.Reason != "maintenance" {
		t.Fatalf("Read after the peer closed the link: %v, want PeerClosedError(maintenance)", err)
	}
	x.Close()
	y.Close()
}

func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 16 << 10
		l := newLink(t, flowConfig(window), flowConfig(window))
		defer l.close()
		x, y := l.open(t)
		buf := make([]byte, 10)

		isTimeout := func(what string, err error) {
			t.Helper()
			var ne net.Error
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("%s: %v, want a timeout (os.ErrDeadlineExceeded, net.Error with Timeout)", what, err)
			}
		}

		// A future read deadline passes on time.
		start := time.Now()
		y.SetReadDeadline(start.Add(time.Second))
		_, err := y.Read(buf)
		isTimeout("Read", err)
		if d := time.Since(start); d != time.Second {
			t.Errorf("Read timed out after %v, want 1s", d)
		}
		// Clearing it makes the stream usable again.
		y.SetReadDeadline(time.Time{})
		x.Write([]byte("hi"))
		if n, err := y.Read(buf); err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("Read after clearing the deadline: %q, %v", buf[:n], err)
		}

		// A deadline set while Read is blocked wakes it.
		woke := make(chan error, 1)
		go func() {
			_, err := y.Read(buf)
			woke <- err
		}()
		synctest.Wait()
		y.SetReadDeadline(time.Now().Add(-time.Second))
		isTimeout("blocked Read", <-woke)
		y.SetReadDeadline(time.Time{})

		// A past write deadline fails at once, though credit is free.
		x.SetWriteDeadline(time.Now().Add(-time.Second))
		if n, err := x.Write([]byte("x")); n != 0 {
			t.Errorf("Write with a past deadline wrote %d bytes", n)
		} else {
			isTimeout("Write with a past deadline", err)
		}

		// A Write blocked on credit times out, having sent one window.
		x.Close()
		y.Close()
		x, y = l.open(t)
		start = time.Now()
		x.SetWriteDeadline(start.Add(2 * time.Second))
		n, err := x.Write(make([]byte, 4*window))
		isTimeout("Write blocked on credit", err)
		if n != window {
			t.Errorf("Write blocked on credit wrote %d bytes, want the window %d", n, window)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("Write timed out after %v, want 2s", d)
		}
		x.Close()
		y.Close()
	})
}

// failingWriteFramer reads from its connection (so it ends when the
// connection closes) and fails every write once released.
type failingWriteFramer struct {
	c       net.Conn
	once    sync.Once
	writing chan struct{} // closed when the first write starts
	release chan struct{} // close to let writes fail
}

func (fr *failingWriteFramer) ReadFrame() (*Frame, error) {
	_, err := fr.c.Read(make([]byte, 1))
	if err == nil {
		err = errors.New("unexpected byte")
	}
	return nil, err
}

func (fr *failingWriteFramer) WriteFrame(*Frame) error {
	fr.once.Do(func() { close(fr.writing) })
	<-fr.release
	return errors.New("write failed")
}

func (fr *failingWriteFramer) Flush() error { return nil }

// TestWriteFailsWhileClosing is a regression test: a write that failed
// while Close (or Abort) was flushing used to deadlock the session.
func TestWriteFailsWhileClosing(t *testing.T) {
	ca, cb := net.Pipe()
	defer cb.Close()
	fr := &failingWriteFramer{c: ca, writing: make(chan struct{}), release: make(chan struct{})}
	s := New(ca, fr, Config{})
	aborted := make(chan struct{})
	go func() {
		s.Abort(errors.New("bye")) // queues a Close and flushes it
		close(aborted)
	}()
	<-fr.writing
	<-s.Done() // Abort is inside its shutdown, waiting for the flush
	close(fr.release)
	select {
	case <-aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("Abort did not return after the writer failed: deadlock")
	}
}

// closeRecorder reports the CloseWrite and Close calls on a connection.
type closeRecorder struct {
	*net.TCPConn
	events chan string
}

func (c *closeRecorder) CloseWrite() error {
	c.events <- "CloseWrite"
	return c.TCPConn.CloseWrite()
}

func (c *closeRecorder) Close() error {
	select {
	case c.events <- "Close":
	default: // only the first Close is of interest
	}
	return c.TCPConn.Close()
}

// TestCloseLingers is a regression test: Close used to close the TCP
// connection right after flushing, and a connection closed with unread
// input is reset, which throws away what the kernel had not sent yet (the
// end of a session, or the Close saying why). Close must send FIN, and
// close only once the peer has read everything and closed too.
func TestCloseLingers(t *testing.T) {
	ca, cb := flowtest.TCPPair(t)
	defer cb.Close()
	rec := &closeRecorder{TCPConn: ca, events: make(chan string, 2)}
	s := New(rec, newJSONFramer(rec), Config{})
	peer := newJSONFramer(cb)

	// Input the session has not asked for: Data for no session.
	peer.WriteFrame(&Frame{Kind: KindData, ID: 9, Data: []byte("unread")})
	peer.Flush()
	if f, err := peer.ReadFrame(); err != nil || f.Kind != KindClose || f.ID != 9 {
		t.Fatalf("peer read %+v, %v; want the refusal of session 9", f, err)
	}

	closed := make(chan struct{})
	go func() {
		s.Abort(errors.New("last words"))
		close(closed)
	}()
	if ev := <-rec.events; ev != "CloseWrite" {
		t.Fatalf("first event %q, want CloseWrite", ev)
	}
	// The peer reads the last frame and a clean end, while the session's
	// side is still open.
	f, err := peer.ReadFrame()
	if err != nil || f.Kind != KindClose || f.ID != -1 || f.Reason != "last words" {
		t.Fatalf("peer read %+v, %v; want the Close of the link", f, err)
	}
	if _, err := peer.ReadFrame(); err != io.EOF {
		t.Fatalf("peer read %v after the last frame, want io.EOF (a FIN, not a reset)", err)
	}
	select {
	case ev := <-rec.events:
		t.Fatalf("%s before the peer closed", ev)
	default:
	}
	cb.Close()
	if ev := <-rec.events; ev != "Close" {
		t.Fatalf("event %q, want Close", ev)
	}
	<-closed
}

// TestCloseDeliversEverything: a session that writes a lot and closes at
// once, while its peer keeps sending, still delivers every byte.
func TestCloseDeliversEverything(t *testing.T) {
	for i := range 2 {
		ca, cb := flowtest.TCPPair(t)
		a := New(ca, newJSONFramer(ca), flowConfig(256<<10))
		b := New(cb, newJSONFramer(cb), flowConfig(256<<10))
		l := &link{a: a, b: b, ca: ca, cb: cb}
		x, y := l.open(t)
		floodOut, floodIn := l.open(t)
		go io.Copy(io.Discard, floodIn)
		go writePattern(floodOut, 0, 1<<40, 4<<10, nil) // until the link ends

		const total = 1 << 20
		go func() {
			writePattern(x, 0, total, 64<<10, nil)
			x.Close() // queued behind the data
			a.Close()
		}()
		n, err := checkPattern(t, y, 0)
		if err != nil || n != total {
			t.Fatalf("round %d: peer read %d of %d bytes, then %v", i, n, total, err)
		}
		l.close()
	}
}

// TestDrainEndsWhenPeerClosesLast is a regression test: when the peer
// closed the last stream of a draining session, the read loop ended the
// session itself and then waited, in lingerClose, for the read loop - its
// own goroutine - to see the peer's end: CloseTimeout every time.
func TestDrainEndsWhenPeerClosesLast(t *testing.T) {
	ca, cb := flowtest.TCPPair(t)
	cfg := Config{CloseTimeout: time.Minute}
	l := &link{a: New(ca, newJSONFramer(ca), cfg), b: New(cb, newJSONFramer(cb), cfg), ca: ca, cb: cb}
	defer l.close()
	fromA, _ := l.open(t)
	l.b.Drain()
	fromA.Close()
	<-l.b.Done() // ended by its read loop
	closed := make(chan struct{})
	go func() {
		l.b.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the drained session still had goroutines 30 s after the peer closed its last stream (CloseTimeout is a minute)")
	}
}

// TestAnswersKeepTheirOrder: on a wire whose Acks name no stream, an
// answer the session gives at once (a drain's refusal) must not overtake
// one the application still owes under ManualAck, or the opener would
// take the refusal for the first open and the first open's Ack for the
// second: one client would get another's session.
func TestAnswersKeepTheirOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLink(t, Config{}, Config{ManualAck: true})
		defer l.close()
		type res struct {
			st  *Stream
			err error
		}
		first, second := make(chan res, 1), make(chan res, 1)
		go func() { st, err := l.a.Open(context.Background(), "first", ""); first <- res{st, err} }()
		st1, err := l.b.Accept()
		if err != nil {
			t.Fatal(err)
		}
		l.b.Drain() // st1 is owed its answer; new opens are refused
		go func() { st, err := l.a.Open(context.Background(), "second", ""); second <- res{st, err} }()
		synctest.Wait() // the second Connect has been answered, or held
		if err := st1.Ack(nil); err != nil {
			t.Fatal(err)
		}
		r1, r2 := <-first, <-second
		if r1.err != nil {
			t.Fatalf("the first open, accepted, got %v", r1.err)
		}
		if !errors.Is(r2.err, ErrDraining) {
			t.Fatalf("the second open, refused by the drain, got %v (stream %v)", r2.err, r2.st)
		}
		r1.st.Close()
		st1.Close()
	})
}

// TestAnsweredInOrderAfterPeerClose: a stream the peer closes before it
// is answered must still give its open an answer, or every later answer
// on the link waits for it; and an Ack that waits its turn goes out
// before the stream's own later frames.
func TestAnsweredInOrderAfterPeerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLink(t, Config{}, Config{ManualAck: true})
		defer l.close()
		type res struct {
			st  *Stream
			err error
		}
		first := make(chan res, 1)
		go func() { st, err := l.a.Open(context.Background(), "first", ""); first <- res{st, err} }()
		st1, err := l.b.Accept()
		if err != nil {
			t.Fatal(err)
		}
		// The opener closes session 1 (its ID is guessable) before the
		// answer: the stream leaves b's table unanswered.
		l.a.enqueue(&Frame{Kind: KindClose, ID: st1.ID()})
		synctest.Wait()
		st1.Close()
		second := make(chan res, 1)
		go func() { st, err := l.a.Open(context.Background(), "second", ""); second <- res{st, err} }()
		st2, err := l.b.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if err := st2.Ack(nil); err != nil {
			t.Fatal(err)
		}
		if r := <-first; r.err == nil {
			t.Errorf("the first open, closed before its answer, opened")
		}
		r := <-second
		if r.err != nil {
			t.Fatalf("the second open waited behind the first's slot: %v", r.err)
		}
		r.st.Close()
		st2.Close()
	})
}

// relayCut is relay.Cut, which this package's tests cannot import (relay
// imports mux): err is a cut, not a clean end.
func relayCut(err error) bool {
	return err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, io.EOF)
}
