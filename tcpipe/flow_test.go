package tcpipe

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
	wire "rtcp/protocol/tcpipe"
)

// The original tcpipe does no flow control: it writes 1024-byte frames as
// fast as TCP takes them. These tests put such a partner, written by hand,
// in front of a target that reads more slowly, through either role, in a
// synctest bubble over in-memory connections: no connection may be lost,
// every byte must arrive in order, and what the instance holds in between
// must stay bounded (MaxBuffer and a few frames), because a full
// connection stops the partner link being read.

const (
	// bigTransfer is the unpaced transfer of the no-session-lost target.
	bigTransfer = 50 << 20
	// slowStep is what the slow reader takes each time the bubble is
	// still: less than the instance holds, so it never catches up.
	slowStep = 64 << 10
	// heldBound bounds what may sit between the partner and a target that
	// stopped reading: MaxBuffer (256 KiB), the link reader's buffer and a
	// piece the relay is writing.
	heldBound = 256<<10 + 64<<10
	// heapBound bounds the heap's growth during the transfer.
	heapBound = 8 << 20
)

// targets is the target host of an instance under test: each connection
// the instance makes to it goes, by port, to the test.
type targets struct {
	mu    sync.Mutex
	conns map[uint16]chan net.Conn
}

func newTargets(ports ...uint16) *targets {
	ts := &targets{conns: make(map[uint16]chan net.Conn)}
	for _, p := range ports {
		ts.conns[p] = make(chan net.Conn, 1)
	}
	return ts
}

// dial is the instance's DialTarget.
func (ts *targets) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	_, ps, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(ps)
	ts.mu.Lock()
	ch := ts.conns[uint16(p)]
	ts.mu.Unlock()
	if ch == nil {
		return nil, errors.New("connection refused")
	}
	a, b := net.Pipe()
	ch <- b
	return a, nil
}

func (ts *targets) accept(port uint16) net.Conn { return <-ts.conns[port] }

// ports are the ports of the targets, an instance's TargetPorts.
func (ts *targets) ports() []uint16 {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var ps []uint16
	for p := range ts.conns {
		ps = append(ps, p)
	}
	return ps
}

// appendFrame appends a frame built by hand from SPEC.md's layout, as the
// original writes it.
func appendFrame(b []byte, kind, local byte, port uint16, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, wire.Magic)
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(data)))
	b = append(b, kind, local, byte(port), byte(port>>8))
	return append(b, data...)
}

// flood writes total bytes of the pattern to each port's connection in
// turn, as Data frames of 1024 bytes from the partner's accepted
// connections (local 0), back to back and unpaced, counting what each
// write handed over.
func flood(w io.Writer, p *flowtest.Pattern, total int64, ports []uint16, wrote []atomic.Int64) error {
	buf := make([]byte, 0, wire.HeaderLen+4+wire.MaxData)
	for off := int64(0); off < total; off += wire.MaxData {
		n := int(min(wire.MaxData, total-off))
		for i, port := range ports {
			buf = appendFrame(buf[:0], 0, 0, port, p.At(off, n))
			if _, err := w.Write(buf); err != nil {
				return err
			}
			wrote[i].Add(int64(n))
		}
	}
	return nil
}

// partnerReader reads what the instance sends its partner for as long as
// the link lasts, so that it is never held back by the partner; each
// Disconnect's port goes to disconnects.
func partnerReader(c net.Conn) (disconnects <-chan uint16, done <-chan struct{}) {
	ch := make(chan uint16, 64)
	end := make(chan struct{})
	go func() {
		defer close(end)
		r := wire.NewReader(c)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			if f.Kind == wire.Disconnect {
				ch <- f.Port
			}
		}
	}()
	return ch, end
}

// role starts one of the two instances with targets ts and the given
// stall timeout, and returns the partner's end of its link and a function
// that stops it.
type role struct {
	name  string
	start func(t *testing.T, ts *targets, stall time.Duration, log *slog.Logger) (partner net.Conn, stop func())
}

var roles = []role{
	{"server", func(t *testing.T, ts *targets, stall time.Duration, log *slog.Logger) (net.Conn, func()) {
		s := &Server{Target: "target.test", TargetPorts: ts.ports(), DialTarget: ts.dial, StallTimeout: stall, Logger: log}
		s.init()
		up := make(chan struct{}, 1)
		s.in.ready = func() { up <- struct{}{} }
		l := memnet.New("")
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		partner, err := l.DialContext(t.Context(), "tcp", "")
		if err != nil {
			t.Fatal(err)
		}
		<-up
		return partner, func() {
			s.Close()
			if err := <-done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		}
	}},
	{"client", func(t *testing.T, ts *targets, stall time.Duration, log *slog.Logger) (net.Conn, func()) {
		l := memnet.New("")
		c := &Client{Server: "partner.test:50000", Target: "target.test", DialTarget: ts.dial,
			Dial: l.DialContext, StallTimeout: stall, Logger: log}
		up := make(chan struct{}, 1)
		c.in.ready = func() { up <- struct{}{} }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.DialAndServe(ctx) }()
		partner, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		<-up
		return partner, func() {
			cancel()
			l.Close()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("DialAndServe = %v, want context.Canceled", err)
			}
		}
	}},
}

// TestFastPartner: a partner that writes 50 MB as 1024-byte Data frames
// back to back, as the original does, for a target that reads slowly,
// through either role. Nothing is cut, every byte arrives, the instance
// holds at most MaxBuffer and a frame or two, and a target that stops
// reading for longer than StallTimeout (alone on the link) is waited for.
func TestFastPartner(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const port = 40000
				logs, logger := flowtest.NewLogs()
				ts := newTargets(port)
				partner, stop := r.start(t, ts, 0, logger)
				defer stop()
				disconnects, linkDone := partnerReader(partner)
				partner.Write(appendFrame(nil, 1, 0, port, nil)) // Connect
				target := ts.accept(port)

				p := flowtest.NewPattern()
				wrote := make([]atomic.Int64, 1)
				flooded := make(chan error, 1)
				go func() { flooded <- flood(partner, p, bigTransfer, []uint16{port}, wrote) }()

				base := flowtest.HeapInuse()
				var maxHeld, maxHeap int64
				stopped := false
				n, err := flowtest.SlowRead(target, p, bigTransfer, slowStep, func(read int64) {
					h := wrote[0].Load() - read
					maxHeld = max(maxHeld, h)
					if h > heldBound {
						t.Fatalf("after %d bytes read, %d sit between the partner and the stopped target; want at most %d", read, h, heldBound)
					}
					if read%(8<<20) == 0 {
						g := flowtest.HeapInuse() - base
						maxHeap = max(maxHeap, g)
						if g > heapBound {
							t.Fatalf("after %d bytes read, the heap grew by %d; want at most %d", read, g, heapBound)
						}
					}
					if !stopped && read >= 8<<20 {
						stopped = true
						time.Sleep(time.Minute) // six times the default StallTimeout
					}
				})
				if err != nil || n != bigTransfer {
					t.Fatalf("the target read %d of %d bytes, then %v", n, bigTransfer, err)
				}
				if err := <-flooded; err != nil {
					t.Fatalf("the partner's writes failed: %v", err)
				}
				target.Close()
				if p := <-disconnects; p != port {
					t.Errorf("the instance sent Disconnect for port %d, want %d", p, port)
				}
				for _, r := range logs.AtLeast(slog.LevelWarn) {
					t.Errorf("logged %v; want no connection cut", r)
				}
				t.Logf("%d MB: at most %d bytes held, heap grew by at most %d", bigTransfer>>20, maxHeld, maxHeap)
				partner.Close()
				<-linkDone
			})
		})
	}
}

// TestStallCut: two connections share the partner link and the partner
// floods both; one target stops reading. The other waits with it until
// StallTimeout passes; then the stalled connection is cut (Disconnect to
// the partner, logged with its reason) and the other carries on.
func TestStallCut(t *testing.T) {
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const stall = 7 * time.Second
				const stalledPort, readerPort = 40001, 40002
				logs, logger := flowtest.NewLogs()
				ts := newTargets(stalledPort, readerPort)
				partner, stop := r.start(t, ts, stall, logger)
				defer stop()
				disconnects, linkDone := partnerReader(partner)
				partner.Write(appendFrame(nil, 1, 0, stalledPort, nil))
				stalled := ts.accept(stalledPort)
				partner.Write(appendFrame(nil, 1, 0, readerPort, nil))
				reader := ts.accept(readerPort)

				const total = 4 << 20
				p := flowtest.NewPattern()
				wrote := make([]atomic.Int64, 2)
				flooded := make(chan error, 1)
				go func() { flooded <- flood(partner, p, total, []uint16{stalledPort, readerPort}, wrote) }()
				var read atomic.Int64
				type result struct {
					n   int64
					err error
				}
				got := make(chan result, 1)
				go func() {
					n, err := flowtest.ReadAll(reader, p, &read)
					got <- result{n, err}
				}()

				synctest.Wait()
				began, before := time.Now(), read.Load()
				time.Sleep(stall - time.Second)
				synctest.Wait()
				if r := read.Load(); r != before || r >= total {
					t.Errorf("the other target read %d bytes while the link was held (%d before); want none", r-before, before)
				}
				if p := <-disconnects; p != stalledPort {
					t.Fatalf("the instance sent Disconnect for port %d, want %d (the stalled one)", p, stalledPort)
				}
				if waited := time.Since(began); waited != stall {
					t.Errorf("the stalled connection was cut after %v, want StallTimeout %v", waited, stall)
				}
				if err := <-flooded; err != nil {
					t.Fatalf("the partner's writes failed: %v", err)
				}
				partner.Write(appendFrame(nil, 2, 0, readerPort, nil)) // Disconnect: the partner's accepted connection ended
				if r := <-got; r.n != total || r.err != nil {
					t.Fatalf("the other target read %d of %d bytes, then %v", r.n, total, r.err)
				}
				// The stalled target comes back: it gets what was held,
				// then the end; the instance logs the cut.
				if n, err := flowtest.ReadAll(stalled, p, nil); err != nil || n > wrote[0].Load() {
					t.Errorf("the stalled target read %d bytes (of %d sent), then %v; want what was held, then the end", n, wrote[0].Load(), err)
				}
				synctest.Wait()
				id := strconv.Itoa(peerBase + stalledPort)
				cuts := logs.Find(slog.LevelWarn, "rtcp: session cut")
				if len(cuts) != 1 || cuts[0].Attrs["session"] != id || !strings.Contains(cuts[0].Attrs["reason"], "took nothing for "+stall.String()) {
					t.Errorf("the session layer logged the cuts %v; want one of session %s whose reason names the stall timeout %v", cuts, id, stall)
				}
				// The session layer's Warn is the cut's one warning; the
				// instance adds the port at Info.
				if cuts := logs.Find(slog.LevelInfo, "tcpipe: connection cut"); len(cuts) != 1 ||
					cuts[0].Attrs["port"] != strconv.Itoa(stalledPort) || !strings.Contains(cuts[0].Attrs["reason"], "stall timeout") {
					t.Errorf("the instance logged the cuts %v; want one of port %d with the reason", cuts, stalledPort)
				}
				if t.Failed() {
					for _, r := range logs.AtLeast(slog.LevelDebug) {
						t.Log(r)
					}
				}
				partner.Close()
				<-linkDone
			})
		})
	}
}
