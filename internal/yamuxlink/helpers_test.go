package yamuxlink

import (
	"context"
	"crypto/sha256"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	hashicorp "github.com/hashicorp/yamux"

	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

// hangLimit bounds a wait that only a bug makes long.
const hangLimit = 20 * time.Second

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return a, r.c
}

// ours starts our session on c, as the yamux client or server, with fr
// (nil: a plain Framer) and cfg adjusted by adjust (if not nil).
func ours(c net.Conn, client bool, fr mux.Framer, adjust func(*mux.Config)) *mux.Session {
	if fr == nil {
		fr = NewFramer(c, c, DefaultWindow, client)
	}
	cfg := Config(DefaultWindow)
	if adjust != nil {
		adjust(&cfg)
	}
	return mux.New(c, fr, cfg)
}

// closeBoth closes the two ends of a link at once: each end's Close
// lingers until the peer closes too.
func closeBoth(client, server *mux.Session) {
	done := make(chan struct{})
	go func() {
		server.Close()
		close(done)
	}()
	client.Close()
	<-done
}

// hcConfig is hashicorp's configuration as rtcp ran it: 4 MiB windows,
// no keepalive unless a test turns it on, and silent.
func hcConfig() *hashicorp.Config {
	cfg := hashicorp.DefaultConfig()
	cfg.MaxStreamWindowSize = DefaultWindow
	cfg.EnableKeepAlive = false
	cfg.LogOutput = nil
	cfg.Logger = log.New(io.Discard, "", 0)
	return cfg
}

// hcSession starts hashicorp's session on c: the opposite role of ours.
func hcSession(t testing.TB, c net.Conn, oursIsClient bool, cfg *hashicorp.Config) *hashicorp.Session {
	t.Helper()
	var (
		s   *hashicorp.Session
		err error
	)
	if oursIsClient {
		s, err = hashicorp.Server(c, cfg)
	} else {
		s, err = hashicorp.Client(c, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openOurs opens a stream on s and accepts it with accept.
func openOurs[T any](t testing.TB, s *mux.Session, accept func() (T, error)) (*mux.Stream, T) {
	t.Helper()
	type res struct {
		c   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := accept()
		ch <- res{c, err}
	}()
	st, err := s.Open(context.Background(), "", "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	return st, r.c
}

// pattern writes n pseudo-random bytes to w in writes of size chunk and
// returns their SHA-256.
func writePattern(w io.Writer, n, chunk int, seed byte) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, chunk)
	x := uint32(seed) + 1
	for n > 0 {
		k := min(n, chunk)
		for i := range buf[:k] {
			x = x*1664525 + 1013904223
			buf[i] = byte(x >> 24)
		}
		h.Write(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return [32]byte{}, err
		}
		n -= k
	}
	return [32]byte(h.Sum(nil)), nil
}

// readSum reads r to its end and returns the SHA-256 and length of what
// it read.
func readSum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 32<<10))
	return [32]byte(h.Sum(nil)), n, err
}

// within runs f and fails the test if it does not return within hangLimit.
func within(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(hangLimit):
		t.Fatalf("%s did not finish within %v", what, hangLimit)
	}
}

// audit is a Framer that checks flow control from its side of the link:
// the peer never has more Data in flight on a stream than this side
// granted (InitialWindow plus its grants), and this side never sends more
// than the peer granted. It records the most that was ever in flight each
// way and signals full when a stream's window toward this side is used up.
type audit struct {
	*Framer
	t testing.TB

	mu        sync.Mutex
	recvd     map[int64]int // Data received per stream
	recvAllow map[int64]int // what we allowed the peer to send
	sent      map[int64]int
	sendAllow map[int64]int
	maxRecv   int // most Data in flight toward us on one stream
	maxSend   int
	full      chan int64 // cap 1: a stream's receive window was used up
	sendFull  chan int64 // cap 1: a stream's send window was used up
	pings     chan struct{}
	pongs     chan struct{}
}

func newAudit(t testing.TB, c net.Conn, client bool) *audit {
	return &audit{
		Framer:    NewFramer(c, c, DefaultWindow, client),
		t:         t,
		recvd:     map[int64]int{},
		recvAllow: map[int64]int{},
		sent:      map[int64]int{},
		sendAllow: map[int64]int{},
		full:      make(chan int64, 1),
		sendFull:  make(chan int64, 1),
		pings:     make(chan struct{}, 1024),
		pongs:     make(chan struct{}, 1024),
	}
}

func notify[T any](c chan T, v T) {
	select {
	case c <- v:
	default:
	}
}

func (a *audit) ReadFrame() (*mux.Frame, error) {
	f, err := a.Framer.ReadFrame()
	if err != nil {
		return f, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch f.Kind {
	case mux.KindData:
		if n := len(f.Data); n > 0 {
			a.recvd[f.ID] += n
			allow := yamux.InitialWindow + a.recvAllow[f.ID]
			inFlight := a.recvd[f.ID]
			if inFlight > allow {
				a.t.Errorf("stream %d: the peer sent %d bytes, %d more than granted", f.ID, inFlight, inFlight-allow)
			}
			if extra := a.recvAllow[f.ID] - (DefaultWindow - yamux.InitialWindow); extra >= 0 {
				// Once the first grant is out, what the peer has in flight
				// is what it sent less what we granted again.
				a.maxRecv = max(a.maxRecv, inFlight-extra)
			}
			if d := allow - inFlight; d == 0 {
				notify(a.full, f.ID)
			}
		}
		a.sendAllow[f.ID] += f.Credit
	case mux.KindKeepAlive:
		if f.Ping {
			notify(a.pings, struct{}{})
		} else {
			notify(a.pongs, struct{}{})
		}
	}
	return f, nil
}

func (a *audit) WriteFrame(f *mux.Frame) error {
	if f.Kind == mux.KindData {
		a.mu.Lock()
		if n := len(f.Data); n > 0 {
			a.sent[f.ID] += n
			allow := yamux.InitialWindow + a.sendAllow[f.ID]
			if a.sent[f.ID] > allow {
				a.t.Errorf("stream %d: this side sent %d bytes, %d more than granted", f.ID, a.sent[f.ID], a.sent[f.ID]-allow)
			}
			if extra := a.sendAllow[f.ID] - (DefaultWindow - yamux.InitialWindow); extra >= 0 {
				a.maxSend = max(a.maxSend, a.sent[f.ID]-extra)
			}
			if a.sent[f.ID] == allow {
				notify(a.sendFull, f.ID)
			}
		}
		a.recvAllow[f.ID] += f.Credit
		a.mu.Unlock()
	}
	return a.Framer.WriteFrame(f)
}

type inFlight struct{ recv, send int }

// most returns the most Data that was in flight on one stream each way.
func (a *audit) most() inFlight {
	a.mu.Lock()
	defer a.mu.Unlock()
	return inFlight{a.maxRecv, a.maxSend}
}
