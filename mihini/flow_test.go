package mihini

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
	wire "rtcp/protocol/mihini"
)

// The originals do no flow control: the Lua device writes 65535-byte DATA
// frames back to back, the Java server forwards as fast as TCP takes it.
// These tests put such a peer, written by hand, in front of a reader that
// is slower than it, in a synctest bubble over in-memory connections: no
// session may be lost, every byte must arrive in order, and what rtcp
// holds in between must stay bounded (MaxBuffer and a few frames), because
// a full session stops its link being read and the peer is held back.

const (
	// bigTransfer is the unpaced transfer of the no-session-lost target.
	bigTransfer = 50 << 20
	// slowStep is what the slow reader takes each time the bubble is
	// still: less than rtcp holds, so it never catches up.
	slowStep = 64 << 10
	// heldBound bounds what may sit between the writer and a reader that
	// stopped: MaxBuffer (256 KiB), the frame that filled it, the frame
	// the link's reader holds, and the relay's piece in flight.
	heldBound = 256<<10 + 3*wire.MaxPayload
	// heapBound bounds the heap's growth during the transfer.
	heapBound = 8 << 20
)

// dialMem connects to l and returns the dialler's end.
func dialMem(t *testing.T, l *memnet.Listener) net.Conn {
	t.Helper()
	c, err := l.DialContext(context.Background(), "", "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// frameReader reads the frames rtcp sends a hand-written peer, for as
// long as the link lasts, so that rtcp is never held back by its peer;
// each CLOSE goes to closes.
func frameReader(c net.Conn) (closes <-chan uint8, done <-chan struct{}) {
	ch := make(chan uint8, 256)
	end := make(chan struct{})
	go func() {
		defer close(end)
		r := wire.NewReader(c)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			if f.Command == wire.Close {
				ch <- f.Client
			}
		}
	}()
	return ch, end
}

// floodData writes total bytes of the pattern as DATA frames of 65535
// bytes back to back, unpaced, for each client in turn, counting what
// each write handed over. It returns when done or on the first error.
func floodData(w io.Writer, p *flowtest.Pattern, total int64, clients []uint8, wrote []atomic.Int64) error {
	buf := make([]byte, 0, 4+wire.MaxPayload)
	for off := int64(0); off < total; off += wire.MaxPayload {
		n := int(min(wire.MaxPayload, total-off))
		for i, id := range clients {
			buf, _ = wire.AppendFrame(buf[:0], wire.Frame{Command: wire.Data, Client: id, Payload: p.At(off, n)})
			if _, err := w.Write(buf); err != nil {
				return err
			}
			wrote[i].Add(int64(n))
		}
	}
	return nil
}

// noCuts fails the test if anything was logged at Warn or above.
func noCuts(t *testing.T, logs *flowtest.Logs) {
	t.Helper()
	for _, r := range logs.AtLeast(slog.LevelWarn) {
		t.Errorf("logged %v; want no session cut", r)
	}
}

// held returns a still callback for SlowRead that fails the test when
// more than heldBound bytes sit between the writer and the reader, and
// records the largest amount and the heap's largest growth.
func held(t *testing.T, wrote *atomic.Int64, maxHeld, maxHeap *int64) func(int64) {
	base := flowtest.HeapInuse()
	return func(read int64) {
		h := wrote.Load() - read
		*maxHeld = max(*maxHeld, h)
		if h > heldBound {
			t.Fatalf("after %d bytes read, %d sit between the writer and the stopped reader; want at most %d", read, h, heldBound)
		}
		if read%(8<<20) == 0 {
			g := flowtest.HeapInuse() - base
			*maxHeap = max(*maxHeap, g)
			if g > heapBound {
				t.Fatalf("after %d bytes read, the heap grew by %d; want at most %d", read, g, heapBound)
			}
		}
	}
}

// TestDeviceFastServer: a server that forwards 50 MB unpaced to a service
// that reads slowly, through rtcp's device side. Nothing is cut, every
// byte arrives, the device holds at most MaxBuffer and a few frames, and
// a service that stops reading for longer than StallTimeout (its session
// alone on the link) is waited for.
func TestDeviceFastServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs, logger := flowtest.NewLogs()
		svcs := make(chan net.Conn, 1)
		d := &Device{Logger: logger, DialService: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, b := net.Pipe()
			svcs <- b
			return a, nil
		}}
		dev, srv := net.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() { served <- d.ServeConn(ctx, dev) }()
		expectBytes(t, srv, unhex("00 00 04 00"), "LISTEN")
		srv.SetReadDeadline(time.Time{})
		closes, linkDone := frameReader(srv)
		srv.Write(connectFrame(1, "svc.test", 7))
		svc := <-svcs

		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 1)
		flood := make(chan error, 1)
		go func() { flood <- floodData(srv, p, bigTransfer, []uint8{1}, wrote) }()

		var maxHeld, maxHeap int64
		check := held(t, &wrote[0], &maxHeld, &maxHeap)
		stopped := false
		n, err := flowtest.SlowRead(svc, p, bigTransfer, slowStep, func(read int64) {
			check(read)
			if !stopped && read >= 8<<20 {
				// The service stops reading for a minute, six times
				// the default StallTimeout: alone on its link, the
				// session is waited for.
				stopped = true
				time.Sleep(time.Minute)
			}
		})
		if err != nil || n != bigTransfer {
			t.Fatalf("the service read %d of %d bytes, then %v", n, bigTransfer, err)
		}
		if err := <-flood; err != nil {
			t.Fatalf("the server's writes failed: %v", err)
		}
		srv.Write(unhex("00 00 02 01")) // the server ends the session
		if err := expectEnd(t, svc, "the service after the server's CLOSE"); err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("the service's connection ended with %v, want a clean end", err)
		}
		if id := <-closes; id != 1 {
			t.Errorf("the device answered CLOSE %d, want CLOSE 1", id)
		}
		noCuts(t, logs)
		t.Logf("%d MB through the device side: at most %d bytes held, heap grew by at most %d", bigTransfer>>20, maxHeld, maxHeap)

		cancel()
		if err := <-served; !errors.Is(err, context.Canceled) {
			t.Errorf("ServeConn = %v, want context.Canceled", err)
		}
		srv.Close()
		<-linkDone
	})
}

// stallCut checks what a stall cut leaves in the logs: the session layer's
// cut, with a reason that names the stall timeout, and the adapter's, for
// the session it carried.
func stallCut(t *testing.T, logs *flowtest.Logs, adapterMsg string, stall time.Duration) {
	t.Helper()
	cuts := logs.Find(slog.LevelWarn, "rtcp: session cut")
	if len(cuts) != 1 || cuts[0].Attrs["session"] != "1" || !strings.Contains(cuts[0].Attrs["reason"], "took nothing for "+stall.String()) {
		t.Errorf("the session layer logged the cuts %v; want one of session 1 whose reason names the stall timeout %v", cuts, stall)
	}
	// The session layer's Warn is the cut's one warning; the adapter
	// adds the session's client and service at Info.
	if cuts := logs.Find(slog.LevelInfo, adapterMsg); len(cuts) != 1 || !strings.Contains(cuts[0].Attrs["reason"], "stall timeout") {
		t.Errorf("the adapter logged the cuts %v; want one %q at Info with the reason", cuts, adapterMsg)
	}
	if warns := logs.Find(slog.LevelWarn, adapterMsg); len(warns) != 0 {
		t.Errorf("the adapter warned of the cut again: %v", warns)
	}
	if t.Failed() {
		for _, r := range logs.AtLeast(slog.LevelDebug) {
			t.Log(r)
		}
	}
}

// TestDeviceStallCut: two sessions share the device's link and the
// server floods both; one service stops reading. The link stops being
// read, so the other session waits too, until StallTimeout passes: then
// the stalled session is cut (CLOSE to the server, logged with its
// reason) and the other carries on to its last byte.
func TestDeviceStallCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = 4 * time.Second
		logs, logger := flowtest.NewLogs()
		svcs := make(chan net.Conn, 2)
		d := &Device{Logger: logger, StallTimeout: stall, DialService: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, b := net.Pipe()
			svcs <- b
			return a, nil
		}}
		dev, srv := net.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() { served <- d.ServeConn(ctx, dev) }()
		expectBytes(t, srv, unhex("00 00 04 00"), "LISTEN")
		srv.SetReadDeadline(time.Time{})
		closes, linkDone := frameReader(srv)
		srv.Write(connectFrame(1, "stalled.test", 7))
		stalled := <-svcs
		srv.Write(connectFrame(2, "reader.test", 7))
		reader := <-svcs

		const total = 8 << 20
		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 2)
		flood := make(chan error, 1)
		go func() { flood <- floodData(srv, p, total, []uint8{1, 2}, wrote) }()
		type result struct {
			n   int64
			err error
		}
		got := make(chan result, 1)
		var read atomic.Int64
		go func() {
			n, err := flowtest.ReadAll(reader, p, &read)
			got <- result{n, err}
		}()

		synctest.Wait() // the stalled session is full, the link held
		began := time.Now()
		before := read.Load()
		if before >= total {
			t.Fatalf("the other session got all %d bytes while the link was held", before)
		}
		time.Sleep(stall / 2)
		synctest.Wait()
		if r := read.Load(); r != before {
			t.Errorf("the other session read %d more bytes while the link was held", r-before)
		}
		if id := <-closes; id != 1 {
			t.Fatalf("the device sent CLOSE %d, want CLOSE 1 for the stalled session", id)
		}
		if waited := time.Since(began); waited != stall {
			t.Errorf("the stalled session was cut after %v, want StallTimeout %v", waited, stall)
		}
		if err := <-flood; err != nil {
			t.Fatalf("the server's writes failed: %v", err)
		}
		srv.Write(unhex("00 00 02 02"))
		if r := <-got; r.n != total || r.err != nil {
			t.Fatalf("the other session read %d of %d bytes, then %v", r.n, total, r.err)
		}
		// The stalled service comes back: it gets what the device held,
		// then the end of its connection; the device logs the cut.
		if n, err := flowtest.ReadAll(stalled, p, nil); err != nil || n > wrote[0].Load() {
			t.Errorf("the stalled service read %d bytes (of %d sent), then %v; want what was held, then the end", n, wrote[0].Load(), err)
		}
		synctest.Wait()
		stallCut(t, logs, "mihini: session cut", stall)

		reader.Close()
		cancel()
		<-served
		srv.Close()
		<-linkDone
	})
}

// startMemServer runs srv in the bubble on in-memory listeners: one for
// device links, one for clients of service. It returns them, and a
// function that closes srv and waits for it.
func startMemServer(t *testing.T, srv *Server, service string) (devices, clients *memnet.Listener, up <-chan struct{}, stop func()) {
	t.Helper()
	srv.init()
	ready := make(chan struct{}, 4)
	srv.ls.ready = func() { ready <- struct{}{} }
	devices, clients = memnet.New(""), memnet.New("")
	done := make(chan error, 2)
	go func() { done <- srv.Serve(devices) }()
	go func() { done <- srv.ServeClients(clients, service) }()
	return devices, clients, ready, func() {
		srv.Close()
		for range 2 {
			if err := <-done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		}
	}
}

// TestServerFastDevice: a device that writes 50 MB as 65535-byte DATA
// frames back to back, as the Lua device does, to a client of rtcp's
// server side that reads slowly. Nothing is cut, every byte arrives, the
// server holds at most MaxBuffer and a few frames, and a client that stops
// reading for longer than StallTimeout (alone on the link) is waited for.
func TestServerFastDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs, logger := flowtest.NewLogs()
		srv := &Server{Logger: logger}
		devices, clients, up, stop := startMemServer(t, srv, "svc.test:7")
		defer stop()
		dev := dialMem(t, devices)
		dev.Write(unhex("00 00 04 00"))
		<-up
		c := dialMem(t, clients)
		r := wire.NewReader(dev)
		if f, err := r.ReadFrame(); err != nil || f.Command != wire.Connect || f.Client != 1 {
			t.Fatalf("the device read %v, %v; want CONNECT 1", f, err)
		}
		closes, linkDone := frameReader(dev)

		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 1)
		flood := make(chan error, 1)
		go func() { flood <- floodData(dev, p, bigTransfer, []uint8{1}, wrote) }()

		var maxHeld, maxHeap int64
		check := held(t, &wrote[0], &maxHeld, &maxHeap)
		stopped := false
		n, err := flowtest.SlowRead(c, p, bigTransfer, slowStep, func(read int64) {
			check(read)
			if !stopped && read >= 8<<20 {
				stopped = true
				time.Sleep(time.Minute)
			}
		})
		if err != nil || n != bigTransfer {
			t.Fatalf("the client read %d of %d bytes, then %v", n, bigTransfer, err)
		}
		if err := <-flood; err != nil {
			t.Fatalf("the device's writes failed: %v", err)
		}
		c.Close()
		if id := <-closes; id != 1 {
			t.Errorf("the server sent CLOSE %d, want CLOSE 1", id)
		}
		noCuts(t, logs)
		t.Logf("%d MB through the server side: at most %d bytes held, heap grew by at most %d", bigTransfer>>20, maxHeld, maxHeap)
		dev.Close()
		<-linkDone
	})
}

// TestServerStallCut: two clients share the device link and the device
// floods both; one client stops reading. The other waits with it until
// StallTimeout passes; then the stalled session is cut (CLOSE to the
// device, logged with its reason) and the other carries on.
func TestServerStallCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = 30 * time.Second
		logs, logger := flowtest.NewLogs()
		srv := &Server{Logger: logger, StallTimeout: stall}
		devices, clients, up, stop := startMemServer(t, srv, "svc.test:7")
		defer stop()
		dev := dialMem(t, devices)
		dev.Write(unhex("00 00 04 00"))
		<-up
		r := wire.NewReader(dev)
		var cs [2]net.Conn
		for i := range cs {
			cs[i] = dialMem(t, clients)
			if f, err := r.ReadFrame(); err != nil || f.Command != wire.Connect || int(f.Client) != i+1 {
				t.Fatalf("the device read %v, %v; want CONNECT %d", f, err, i+1)
			}
		}
		stalled, reader := cs[0], cs[1]
		closes, linkDone := frameReader(dev)

		const total = 8 << 20
		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 2)
		flood := make(chan error, 1)
		go func() { flood <- floodData(dev, p, total, []uint8{1, 2}, wrote) }()
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
			t.Errorf("the other client read %d bytes while the link was held (%d before); want none", r-before, before)
		}
		if id := <-closes; id != 1 {
			t.Fatalf("the server sent CLOSE %d, want CLOSE 1 for the stalled client", id)
		}
		if waited := time.Since(began); waited != stall {
			t.Errorf("the stalled session was cut after %v, want StallTimeout %v", waited, stall)
		}
		if err := <-flood; err != nil {
			t.Fatalf("the device's writes failed: %v", err)
		}
		dev.Write(unhex("00 00 02 02")) // the device ends the other session
		if r := <-got; r.n != total || r.err != nil {
			t.Fatalf("the other client read %d of %d bytes, then %v", r.n, total, r.err)
		}
		if n, err := flowtest.ReadAll(stalled, p, nil); err != nil || n > wrote[0].Load() {
			t.Errorf("the stalled client read %d bytes (of %d sent), then %v; want what was held, then the end", n, wrote[0].Load(), err)
		}
		synctest.Wait()
		stallCut(t, logs, "mihini: session cut", stall)
		dev.Close()
		<-linkDone
	})
}
