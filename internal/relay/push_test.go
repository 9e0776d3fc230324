package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/mux"
)

// Join with an rtcp stream on one side: the stream's bytes reach the TCP
// side through mux.Stream.PushTo (from the link's read loop).

// jsonFramer is a minimal mux.Framer: one JSON object per frame.
type jsonFramer struct {
	dec *json.Decoder
	bw  *bufio.Writer
	enc *json.Encoder
	f   mux.Frame
}

func newJSONFramer(c net.Conn) *jsonFramer {
	bw := bufio.NewWriter(c)
	return &jsonFramer{dec: json.NewDecoder(c), bw: bw, enc: json.NewEncoder(bw)}
}

func (fr *jsonFramer) ReadFrame() (*mux.Frame, error) {
	fr.f = mux.Frame{}
	if err := fr.dec.Decode(&fr.f); err != nil {
		return nil, err
	}
	return &fr.f, nil
}

func (fr *jsonFramer) WriteFrame(f *mux.Frame) error { return fr.enc.Encode(f) }
func (fr *jsonFramer) Flush() error                  { return fr.bw.Flush() }

// streamPair returns the two ends of a stream of a flow-controlled session
// over loopback TCP, and a function that closes the sessions.
func streamPair(t *testing.T) (near, far *mux.Stream, closeSessions func()) {
	t.Helper()
	open, closeSessions := sessionPair(t)
	near, far = open()
	return near, far, closeSessions
}

// sessionPair returns the two ends of flow-controlled sessions over
// loopback TCP: open opens a stream on them and returns its two ends.
func sessionPair(t *testing.T) (open func() (near, far *mux.Stream), closeSessions func()) {
	t.Helper()
	ca, cb := flowtest.TCPPair(t)
	cfg := mux.Config{FlowControl: true, Window: 256 << 10, PeerWindow: 256 << 10, HalfClose: true}
	a := mux.New(ca, newJSONFramer(ca), cfg)
	b := mux.New(cb, newJSONFramer(cb), cfg)
	open = func() (near, far *mux.Stream) {
		t.Helper()
		accepted := make(chan *mux.Stream, 1)
		go func() {
			st, _ := b.Accept()
			accepted <- st
		}()
		far, err := a.Open(context.Background(), "client", "192.0.2.1:1")
		if err != nil {
			t.Fatal(err)
		}
		near = <-accepted
		if near == nil {
			t.Fatal("Accept failed")
		}
		return near, far
	}
	return open, func() { a.Close(); b.Close() }
}

// randomBytes returns n bytes of a random stream given by seed: fast
// under -race, where a loop per byte takes seconds.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// joinSides says on which side of Join a test puts the stream: b (as the
// DP joins a client to a server's stream), or a.
var joinSides = []string{"stream b", "stream a"}

// joinOn joins local and stream with the stream on side, and returns the
// stats as if the stream were b.
func joinOn(side string, local net.Conn, stream *mux.Stream, count func(toStream bool, n int)) (Stats, error) {
	if side == "stream b" {
		return Join(local, stream, count)
	}
	var c func(bool, int)
	if count != nil {
		c = func(aToB bool, n int) { count(!aToB, n) }
	}
	st, err := Join(stream, local, c)
	st.AtoB, st.BtoA = st.BtoA, st.AtoB
	st.FailedAtoB = err != nil && !st.FailedAtoB
	return st, err
}

// TestJoinPushesStreamToTCP relays a stream and a TCP connection both
// ways: every byte arrives, each end passes on as a half-close, and Join's
// counts agree.
func TestJoinPushesStreamToTCP(t *testing.T) {
	for _, side := range joinSides {
		t.Run(side, func(t *testing.T) { testJoinPushesStreamToTCP(t, side) })
	}
}

func testJoinPushesStreamToTCP(t *testing.T, side string) {
	stream, far, closeSessions := streamPair(t)
	defer closeSessions()
	app, local := flowtest.TCPPair(t)
	local.SetWriteBuffer(32 << 10)
	app.SetReadBuffer(32 << 10)

	var toApp, fromApp atomic.Int64
	type joinResult struct {
		st  Stats
		err error
	}
	joined := make(chan joinResult, 1)
	go func() {
		st, err := joinOn(side, local, stream, func(aToB bool, n int) {
			if aToB {
				fromApp.Add(int64(n))
			} else {
				toApp.Add(int64(n))
			}
		})
		joined <- joinResult{st, err}
	}()

	down := randomBytes(1, 8<<20) // far -> stream -> app
	up := randomBytes(2, 1<<20)   // app -> stream -> far
	go func() {
		far.Write(down)
		far.CloseWrite()
	}()
	go func() {
		app.Write(up)
		app.CloseWrite()
	}()
	gotUp := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(far)
		gotUp <- b
	}()
	h := sha256.New()
	n, err := io.Copy(h, app)
	if err != nil || n != int64(len(down)) {
		t.Fatalf("app read %d bytes, %v; want %d then io.EOF", n, err, len(down))
	}
	if sum := sha256.Sum256(down); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatal("app read other bytes than the stream's peer wrote")
	}
	if b := <-gotUp; !bytes.Equal(b, up) {
		t.Fatalf("the stream's peer read %d bytes, want the app's %d", len(b), len(up))
	}
	r := <-joined
	if r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
	if r.st.BtoA != int64(len(down)) || r.st.AtoB != int64(len(up)) {
		t.Errorf("Join's stats: %+v, want BtoA %d, AtoB %d", r.st, len(down), len(up))
	}
	if toApp.Load() != int64(len(down)) || fromApp.Load() != int64(len(up)) {
		t.Errorf("count summed %d to the app and %d from it, want %d and %d",
			toApp.Load(), fromApp.Load(), len(down), len(up))
	}
	far.Close()
}

// TestJoinPushDestinationReset: when the TCP side resets while the stream
// pushes to it, Join fails and cuts the stream off: its peer's reads end
// with an error, not io.EOF.
func TestJoinPushDestinationReset(t *testing.T) {
	for _, side := range joinSides {
		t.Run(side, func(t *testing.T) { testJoinPushDestinationReset(t, side) })
	}
}

func testJoinPushDestinationReset(t *testing.T, side string) {
	stream, far, closeSessions := streamPair(t)
	defer closeSessions()
	app, local := flowtest.TCPPair(t)
	joined := make(chan error, 1)
	go func() {
		_, err := joinOn(side, local, stream, nil)
		joined <- err
	}()
	wrote := make(chan error, 1)
	go func() {
		buf := randomBytes(3, 64<<10)
		for {
			if _, err := far.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
	}()
	io.ReadFull(app, make([]byte, 256<<10))
	app.SetLinger(0)
	app.Close()

	if err := <-joined; err == nil {
		t.Fatal("Join returned nil after the TCP side reset")
	}
	if err := <-wrote; err == nil {
		t.Fatal("the stream's peer kept writing after the cut")
	}
	_, err := io.Copy(io.Discard, far)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("the stream's peer read to %v, want the cut's error", err)
	}
	far.Close()
}

// TestJoinIdleHoldsOneGoroutine: an idle Join of a stream and a TCP
// connection holds one goroutine, its caller's, waiting for the TCP
// side's bytes: the stream's go to the TCP side from the link's read
// loop (mux.Stream.PushAsync), with the stream on either side. And the
// sessions go on both ways after the idle time.
func TestJoinIdleHoldsOneGoroutine(t *testing.T) {
	for _, side := range joinSides {
		t.Run(side, func(t *testing.T) {
			const n = 50
			open, closeSessions := sessionPair(t)
			defer closeSessions()
			type leg struct {
				far, app net.Conn
				joined   chan error
			}
			legs := make([]leg, n)
			// roundTrip carries a byte each way through leg l.
			roundTrip := func(l leg) {
				t.Helper()
				b := make([]byte, 1)
				if _, err := l.far.Write([]byte("d")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(l.app, b); err != nil || b[0] != 'd' {
					t.Fatalf("the TCP side read %q, %v", b, err)
				}
				if _, err := l.app.Write([]byte("u")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(l.far, b); err != nil || b[0] != 'u' {
					t.Fatalf("the stream's peer read %q, %v", b, err)
				}
			}
			before := runtime.NumGoroutine()
			for i := range legs {
				stream, far := open()
				app, local := flowtest.TCPPair(t)
				legs[i] = leg{far: far, app: app, joined: make(chan error, 1)}
				go func() {
					_, err := joinOn(side, local, stream, nil)
					legs[i].joined <- err
				}()
				roundTrip(legs[i])
			}
			// Each leg has carried a byte each way: Join runs both
			// directions, and no goroutine is still starting.
			perJoin := float64(runtime.NumGoroutine()-before) / n
			t.Logf("%.2f goroutines per idle Join", perJoin)
			if perJoin > 1.1 {
				t.Errorf("an idle Join holds %.2f goroutines, want 1: is a goroutine waiting for the stream's bytes?", perJoin)
			}
			for _, l := range legs {
				roundTrip(l)
				l.far.(*mux.Stream).CloseWrite()
				l.app.(*net.TCPConn).CloseWrite()
				if err := recvJoin(t, l.joined); err != nil {
					t.Errorf("Join ended with %v after both ends, want nil", err)
				}
				l.far.Close()
			}
		})
	}
}

// recvJoin receives Join's result, failing the test if that takes so
// long that only a hang explains it.
func recvJoin(t *testing.T, joined <-chan error) error {
	t.Helper()
	select {
	case err := <-joined:
		return err
	case <-time.After(time.Minute):
		t.Fatal("Join did not end within a minute: a hang")
		return nil
	}
}

// TestJoinIdleEndsWithTheLink: an idle Join, whose stream direction has
// no goroutine (mux.Stream.PushAsync, parked), ends with an error when
// the stream's link goes, though nothing more arrives on either side;
// and when the TCP side resets, with the stream on either side.
func TestJoinIdleEndsWithTheLink(t *testing.T) {
	for _, side := range joinSides {
		for _, end := range []string{"link lost", "TCP side reset"} {
			t.Run(side+"/"+end, func(t *testing.T) {
				stream, far, closeSessions := streamPair(t)
				defer closeSessions()
				defer far.Close()
				app, local := flowtest.TCPPair(t)
				defer app.Close()
				joined := make(chan error, 1)
				go func() {
					_, err := joinOn(side, local, stream, nil)
					joined <- err
				}()
				// A byte each way: both directions are running, and
				// the stream's is idle after it.
				b := make([]byte, 1)
				if _, err := far.Write([]byte("d")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(app, b); err != nil {
					t.Fatal(err)
				}
				if _, err := app.Write([]byte("u")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(far, b); err != nil {
					t.Fatal(err)
				}
				switch end {
				case "link lost":
					closeSessions()
				case "TCP side reset":
					app.SetLinger(0)
					app.Close()
				}
				if err := recvJoin(t, joined); err == nil {
					t.Errorf("Join ended with nil after %s, want an error", end)
				}
			})
		}
	}
}

// TestJoinBlockedPushEndsWithTheCut: a Join whose stream direction is
// blocked writing to a TCP side that reads nothing ends at once when the
// stream is cut from afar (its link lost, its peer's abort), with the
// cut's error: the TCP side is reset, and nothing is held until it reads
// or goes.
func TestJoinBlockedPushEndsWithTheCut(t *testing.T) {
	for _, side := range joinSides {
		for _, end := range []string{"link lost", "peer abort"} {
			t.Run(side+"/"+end, func(t *testing.T) {
				stream, far, closeSessions := streamPair(t)
				defer closeSessions()
				defer far.Close()
				local, app := flowtest.StalledPair(t)
				defer app.Close()
				defer app.Close()
				defer app.Close()
				joined := make(chan error, 1)
				go func() {
					_, err := joinOn(side, local, stream, nil)
					joined <- err
				}()
				go func() {
					buf := randomBytes(4, 64<<10)
					for {
						if _, err := far.Write(buf); err != nil {
							return
						}
					}
				}()
				flowtest.WaitParked(t, time.Minute, "rtcp/internal/mux.(*Stream).pushRun", "IO wait")
				switch end {
				case "link lost":
					closeSessions()
				case "peer abort":
					far.Abort(errors.New("disk on fire"))
				}
				if err := recvJoin(t, joined); !Cut(err) {
					t.Errorf("Join ended with %v after the %s, want a cut", err, end)
				}
				if _, err := io.Copy(io.Discard, app); err == nil {
					t.Errorf("the TCP side read a clean end after the %s, want a reset", end)
				}
			})
		}
	}
}
