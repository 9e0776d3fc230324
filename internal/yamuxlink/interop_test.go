package yamuxlink

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	hashicorp "github.com/hashicorp/yamux"

	"rtcp/internal/mux"
)

// Interop: our session against hashicorp/yamux, each test in both roles.

var roles = []struct {
	name       string
	oursClient bool
}{
	{"ours client", true},
	{"ours server", false},
}

// hlink is our session (with an audit Framer) facing hashicorp's.
type hlink struct {
	o *mux.Session
	a *audit
	h *hashicorp.Session
}

func newHLink(t *testing.T, oursClient bool, hcfg *hashicorp.Config, adjust func(*mux.Config)) *hlink {
	t.Helper()
	oc, hc := tcpPair(t)
	l := &hlink{a: newAudit(t, oc, oursClient)}
	l.o = ours(oc, oursClient, l.a, adjust)
	l.h = hcSession(t, hc, oursClient, hcfg)
	t.Cleanup(func() {
		l.h.Close()
		l.o.Close()
	})
	return l
}

// openTheirs opens a stream from hashicorp's side.
func (l *hlink) openTheirs(t *testing.T) (*hashicorp.Stream, *mux.Stream) {
	t.Helper()
	hs, err := l.h.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.o.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if st.ID() != int64(hs.StreamID()) {
		t.Fatalf("stream IDs %d (ours) and %d (hashicorp)", st.ID(), hs.StreamID())
	}
	return hs, st
}

func (l *hlink) openOurs(t *testing.T) (*mux.Stream, *hashicorp.Stream) {
	t.Helper()
	st, hs := openOurs(t, l.o, l.h.AcceptStream)
	if st.ID() != int64(hs.StreamID()) {
		t.Fatalf("stream IDs %d (ours) and %d (hashicorp)", st.ID(), hs.StreamID())
	}
	return st, hs
}

// echo checks one exchange each way on a stream.
func echo(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, d := range []struct{ from, to net.Conn }{{a, b}, {b, a}} {
		if _, err := d.from.Write([]byte("ping?")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(d.to, buf); err != nil || string(buf) != "ping?" {
			t.Fatalf("read %q, %v", buf, err)
		}
	}
}

func TestInteropOpen(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)
			parity := map[bool]int64{true: 1, false: 0}[r.oursClient]
			for range 3 {
				st, hs := l.openOurs(t)
				if st.ID()%2 != parity {
					t.Errorf("our stream %d has the wrong parity", st.ID())
				}
				echo(t, st, hs)
				hs2, st2 := l.openTheirs(t)
				echo(t, st2, hs2)
			}
		})
	}
}

// TestInteropSHA sends 8 MiB each way on two streams at once, one opened
// by each side, and checks every byte.
func TestInteropSHA(t *testing.T) {
	const size = 8 << 20
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)
			st1, hs1 := l.openOurs(t)
			hs2, st2 := l.openTheirs(t)
			var wg sync.WaitGroup
			for i, p := range []struct {
				name     string
				w        io.Writer
				closeW   func() error
				r        io.Reader
				chunk    int
				seed     byte
				readSide string
			}{
				{"ours to hashicorp on our stream", st1, st1.CloseWrite, hs1, 100 << 10, 1, "hashicorp"},
				{"hashicorp to ours on our stream", hs1, hs1.Close, st1, 1 << 20, 2, "ours"},
				{"ours to hashicorp on its stream", st2, st2.CloseWrite, hs2, 7 << 10, 3, "hashicorp"},
				{"hashicorp to ours on its stream", hs2, hs2.Close, st2, 64 << 10, 4, "ours"},
			} {
				sum := make(chan [32]byte, 1)
				wg.Add(2)
				go func() {
					defer wg.Done()
					s, err := writePattern(p.w, size, p.chunk, p.seed)
					if err != nil {
						t.Errorf("%s: write: %v", p.name, err)
					}
					p.closeW()
					sum <- s
				}()
				go func() {
					defer wg.Done()
					got, n, err := readSum(p.r)
					if want := <-sum; err != nil || n != size || got != want {
						t.Errorf("%s (%d): read %d bytes, %v, sum match %v", p.name, i, n, err, got == want)
					}
				}()
			}
			within(t, "the transfers", wg.Wait)
			st1.Close()
			st2.Close()
		})
	}
}

// TestInteropHalfClose checks CloseWrite and Close both ways.
func TestInteropHalfClose(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)

			// Our CloseWrite: hashicorp reads the end and answers.
			st, hs := l.openOurs(t)
			st.Write([]byte("request"))
			st.CloseWrite()
			if got, err := io.ReadAll(hs); err != nil || string(got) != "request" {
				t.Fatalf("hashicorp read %q, %v", got, err)
			}
			hs.Write([]byte("response"))
			hs.Close()
			if got, err := io.ReadAll(st); err != nil || string(got) != "response" {
				t.Fatalf("we read %q, %v", got, err)
			}
			st.Close()
			if n := l.h.NumStreams(); n != 0 {
				t.Errorf("hashicorp holds %d streams after both FINs", n)
			}

			// Hashicorp's Close is a half-close: we answer after its end.
			hs, st = l.openTheirs(t)
			hs.Write([]byte("request"))
			hs.Close()
			if got, err := io.ReadAll(st); err != nil || string(got) != "request" {
				t.Fatalf("we read %q, %v", got, err)
			}
			if _, err := hs.Write([]byte("x")); !errors.Is(err, hashicorp.ErrStreamClosed) {
				t.Errorf("hashicorp's Write after its Close: %v, want ErrStreamClosed (it never sends data after FIN)", err)
			}
			st.Write([]byte("response"))
			st.Close()
			if got, err := io.ReadAll(hs); err != nil || string(got) != "response" {
				t.Fatalf("hashicorp read %q, %v", got, err)
			}
		})
	}
}

// TestInteropCloseAfterCloseWrite checks the case that would end the
// whole session if our Close sent a second FIN: hashicorp takes a FIN on
// a stream it has not closed itself, after one already came, for a
// protocol error. Data hashicorp still sends after our Close is answered
// with an RST.
func TestInteropCloseAfterCloseWrite(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)
			st, hs := l.openOurs(t)
			st.CloseWrite()
			st.Close()
			if got, err := io.ReadAll(hs); err != nil || len(got) != 0 {
				t.Fatalf("hashicorp read %q, %v", got, err)
			}
			within(t, "hashicorp's writes to fail", func() {
				for {
					if _, err := hs.Write([]byte("late")); err != nil {
						if !errors.Is(err, hashicorp.ErrConnectionReset) {
							t.Errorf("hashicorp's write after our Close: %v, want ErrConnectionReset", err)
						}
						return
					}
				}
			})
			st, hs = l.openOurs(t)
			echo(t, st, hs)
			if l.h.IsClosed() {
				t.Error("hashicorp's session ended")
			}
		})
	}
}

// TestInteropReset checks RST both ways: our Abort, and hashicorp's
// refusal of an open when its accept backlog is full.
func TestInteropReset(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			hcfg := hcConfig()
			hcfg.AcceptBacklog = 1
			l := newHLink(t, r.oursClient, hcfg, nil)
			st, hs := l.openOurs(t)
			st.Abort(errors.New("rtcp: cut"))
			if _, err := io.ReadAll(hs); !errors.Is(err, hashicorp.ErrConnectionReset) {
				t.Errorf("hashicorp read after our Abort: %v, want ErrConnectionReset", err)
			}

			waiting, err := l.o.Open(t.Context(), "", "") // fills the backlog
			if err != nil {
				t.Fatal(err)
			}
			refused, err := l.o.Open(t.Context(), "", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := refused.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), ResetReason) {
				t.Errorf("read on a stream hashicorp refused: %v, want %q", err, ResetReason)
			}
			if hs, err := l.h.AcceptStream(); err != nil || hs.StreamID() != uint32(waiting.ID()) {
				t.Errorf("hashicorp accepted %v, %v; want stream %d", hs, err, waiting.ID())
			}
		})
	}
}

// TestInteropKeepAlive runs hashicorp's keepalive every 2 ms and checks
// the session stays up over ten pings (hashicorp's keepalive waits for
// each answer, and ends its session if none comes within
// ConnectionWriteTimeout, so the tenth ping proves the first nine were
// answered); then that hashicorp answers our heartbeats.
func TestInteropKeepAlive(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			hcfg := hcConfig()
			hcfg.EnableKeepAlive = true
			hcfg.KeepAliveInterval = 2 * time.Millisecond
			l := newHLink(t, r.oursClient, hcfg, nil)
			hs, st := l.openTheirs(t)
			for i := range 10 {
				select {
				case <-l.a.pings:
				case <-l.h.CloseChan():
					t.Fatalf("hashicorp's session ended after %d pings", i)
				case <-time.After(hangLimit):
					t.Fatalf("no ping %d", i+1)
				}
			}
			if _, err := l.h.Ping(); err != nil {
				t.Errorf("hashicorp's Ping: %v", err)
			}
			echo(t, st, hs)

			l.o.SetKeepAlive(time.Millisecond)
			for range 3 {
				select {
				case <-l.a.pongs:
				case <-time.After(hangLimit):
					t.Fatal("hashicorp did not answer our ping")
				}
			}
			l.o.SetKeepAlive(0)
		})
	}
}

// TestInteropWindow moves 16 MiB each way with hashicorp's 4 MiB
// MaxStreamWindowSize, the reader stalling until the window is used up:
// neither side sends more than the other granted, and both use all of
// the 4 MiB (each one's SYN or ACK granted the 3.75 MiB above yamux's
// 256 KiB).
func TestInteropWindow(t *testing.T) {
	const total = 16 << 20
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)
			var (
				st *mux.Stream
				hs *hashicorp.Stream
			)
			if r.oursClient {
				st, hs = l.openOurs(t)
			} else {
				hs, st = l.openTheirs(t)
			}

			// Hashicorp writes, we stall.
			sum := make(chan [32]byte, 1)
			go func() {
				s, err := writePattern(hs, total, 1<<20, 5)
				if err != nil {
					t.Error(err)
				}
				hs.Close()
				sum <- s
			}()
			stalledRead(t, st, l.a.full, total, sum)

			// We write, hashicorp stalls.
			go func() {
				s, err := writePattern(st, total, 200<<10, 6)
				if err != nil {
					t.Error(err)
				}
				st.CloseWrite()
				sum <- s
			}()
			stalledRead(t, hs, l.a.sendFull, total, sum)

			if m := l.a.most(); m.recv != DefaultWindow || m.send != DefaultWindow {
				t.Errorf("most in flight: %d received, %d sent; want %d both", m.recv, m.send, DefaultWindow)
			}
		})
	}
}

// TestInteropGoAway checks how sessions end: hashicorp's GoAway (code 0,
// which for hashicorp only means "open no more streams") ends our session
// with the code in its error; our Abort is a GoAway with code 2 (internal
// error), which ends hashicorp's.
func TestInteropGoAway(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			l := newHLink(t, r.oursClient, hcConfig(), nil)
			// GoAway waits for its frame to be written; our session may end
			// the link before hashicorp's sender reports back, and then it
			// reports the shutdown instead.
			if err := l.h.GoAway(); err != nil && !errors.Is(err, hashicorp.ErrSessionShutdown) {
				t.Fatal(err)
			}
			within(t, "our session to end", func() { <-l.o.Done() })
			if err := l.o.Err(); err == nil || !strings.Contains(err.Error(), "go away, code 0: normal") {
				t.Errorf("our session ended with %v", err)
			}

			l = newHLink(t, r.oursClient, hcConfig(), nil)
			l.o.Abort(errors.New("rtcp: giving up"))
			if _, err := l.h.AcceptStream(); err == nil || err.Error() != "remote yamux internal error" {
				t.Errorf("hashicorp's session ended with %v", err)
			}
		})
	}
}

// TestInteropOpenTimeout shows hashicorp's StreamOpenTimeout: an open our
// side never acknowledges (ManualAck, no Ack) ends hashicorp's whole
// session, not just the stream.
func TestInteropOpenTimeout(t *testing.T) {
	hcfg := hcConfig()
	hcfg.StreamOpenTimeout = 20 * time.Millisecond
	l := newHLink(t, true, hcfg, func(c *mux.Config) { c.ManualAck = true })
	if _, err := l.h.OpenStream(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.o.Accept(); err != nil {
		t.Fatal(err)
	}
	within(t, "hashicorp's session to end", func() { <-l.h.CloseChan() })
	within(t, "our session to end", func() { <-l.o.Done() })
}

// TestInteropGrowingWindow: with rtcp's windows, which start at yamux's
// 256 KiB and grow while the reader keeps up, a plain hashicorp peer
// sends into the grown window (one frame may then be a whole grant
// larger than 256 KiB) and every byte arrives; what we send it is held to
// its fixed window as before.
func TestInteropGrowingWindow(t *testing.T) {
	const total = 24 << 20
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			oc, hc := tcpPair(t)
			cfg := Config(0)
			cfg.MaxWindow = mux.DefaultMaxWindow
			cfg.MinRTT = time.Second // growth must not hang on how fast loopback answers an open
			o := mux.New(oc, NewFramer(oc, oc, cfg.MaxWindow, r.oursClient), cfg)
			h := hcSession(t, hc, r.oursClient, hcConfig())
			defer closeBothHC(o, h)
			var (
				st *mux.Stream
				hs *hashicorp.Stream
			)
			if r.oursClient {
				st, hs = openOurs(t, o, h.AcceptStream)
			} else {
				var err error
				if hs, err = h.OpenStream(); err != nil {
					t.Fatal(err)
				}
				if st, err = o.Accept(); err != nil {
					t.Fatal(err)
				}
			}
			sum := make(chan [32]byte, 1)
			go func() {
				s, err := writePattern(hs, total, 4<<20, 7)
				if err != nil {
					t.Error(err)
				}
				hs.Close() // hashicorp's Close only half-closes
				sum <- s
			}()
			got, n, err := readSum(st)
			if err != nil || n != total {
				t.Fatalf("read %d of %d bytes from hashicorp: %v", n, total, err)
			}
			if want := <-sum; got != want {
				t.Fatalf("the bytes from hashicorp differ")
			}
			if w := st.ReceiveWindow(); w <= 256<<10 {
				t.Errorf("our window stayed at %d with a reader that kept up", w)
			}

			go func() {
				s, err := writePattern(st, 8<<20, 1<<20, 8)
				if err != nil {
					t.Error(err)
				}
				st.CloseWrite()
				sum <- s
			}()
			got, n, err = readSum(hs)
			if err != nil || n != 8<<20 {
				t.Fatalf("hashicorp read %d of %d bytes: %v", n, 8<<20, err)
			}
			if want := <-sum; got != want {
				t.Fatalf("the bytes to hashicorp differ")
			}
			st.Close()
		})
	}
}

func closeBothHC(o *mux.Session, h *hashicorp.Session) {
	h.Close()
	o.Close()
}
