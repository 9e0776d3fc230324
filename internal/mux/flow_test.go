package mux

import (
	"context"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// delayConns returns the two ends of an in-memory connection that holds
// every byte for rtt/2 each way: a path with a long round trip, for
// synctest's clock. Each way sends a chunk at a time at lineRate, far
// above what the tests move, so that chunks written at one instant land
// at instants of their own, as on a wire: chunks landing together would
// leave the order of what each side does with them to the scheduler.
func delayConns(rtt time.Duration) (a, b net.Conn, stop func()) {
	a, fa := net.Pipe()
	fb, b := net.Pipe()
	var wg sync.WaitGroup
	forward := func(dst, src net.Conn) {
		type chunk struct {
			p   []byte
			due time.Time
		}
		q := make(chan chunk, 1<<16)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(q)
			var last time.Time // when the wire is free
			for {
				buf := make([]byte, 64<<10)
				n, err := src.Read(buf)
				if n > 0 {
					if now := time.Now(); now.After(last) {
						last = now
					}
					last = last.Add(time.Duration(n) * time.Second / lineRate)
					q <- chunk{buf[:n], last.Add(rtt / 2)}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer dst.Close()
			for c := range q {
				time.Sleep(time.Until(c.due))
				if _, err := dst.Write(c.p); err != nil {
					src.Close()
					for range q {
					}
					return
				}
			}
		}()
	}
	forward(fb, fa)
	forward(fa, fb)
	return a, b, func() {
		a.Close()
		b.Close()
		wg.Wait()
	}
}

// lineRate is delayConns' bytes per second each way.
const lineRate = 10 << 30

func delayLink(t *testing.T, rtt time.Duration, cfgA, cfgB Config) (*link, func()) {
	ca, cb, stop := delayConns(rtt)
	l := &link{ca: ca, cb: cb}
	l.a = New(ca, newJSONFramer(ca), cfgA)
	l.b = New(cb, newJSONFramer(cb), cfgB)
	return l, func() { l.close(); stop() }
}

func window(st *Stream) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.win
}

// transfer sends total bytes from out to in and returns how long that
// took on the bubble's clock.
func transfer(t *testing.T, out, in *Stream, total int64) time.Duration {
	t.Helper()
	start := time.Now()
	go func() {
		writePattern(out, 0, total, 64<<10, nil)
		out.CloseWrite()
	}()
	n, err := checkPattern(t, in, 0)
	if err != nil || n != total {
		t.Fatalf("read %d of %d bytes: %v", n, total, err)
	}
	return time.Since(start)
}

// TestWindowGrowsToThePath: at a 100 ms round trip a 64 KiB window moves
// 655 KB/s; the window must grow until the round trip no longer limits the
// transfer, up to MaxWindow, and give its growth back when the stream ends.
func TestWindowGrowsToThePath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 100 * time.Millisecond
		budget := NewBudget(64 << 20)
		cfg := flowConfig(64 << 10)
		cfg.MaxWindow = 4 << 20
		cfgB := cfg
		cfgB.Budget = budget
		l, stop := delayLink(t, rtt, cfg, cfgB)
		defer stop()
		out, in := l.open(t)

		const total = 16 << 20
		took := transfer(t, out, in, total)
		// Fixed at 64 KiB, 16 MiB would take 25 s; grown to 4 MiB, about
		// 6 round trips plus 16/4 windows, about 1 s.
		if took > 2*time.Second {
			t.Errorf("16 MiB at a %v round trip took %v: the window did not grow (it is %d)", rtt, took, window(in))
		}
		if w := window(in); w != 4<<20 {
			t.Errorf("the window grew to %d, want MaxWindow %d", w, 4<<20)
		}
		if used := budget.Used(); used != 4<<20-64<<10 {
			t.Errorf("the shared budget has %d taken, want the growth %d", used, 4<<20-64<<10)
		}
		out.Close()
		in.Close()
		if used := budget.Used(); used != 0 {
			t.Errorf("after the stream ended, the shared budget still has %d taken", used)
		}
		t.Logf("16 MiB at a %v round trip: %v", rtt, took)
	})
}

// TestWindowBudgets: when the budgets are spent, windows stop growing;
// credit is withheld and the transfers still complete.
func TestWindowBudgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 100 * time.Millisecond
		shared := NewBudget(1 << 20)
		cfg := flowConfig(64 << 10)
		cfg.MaxWindow = 8 << 20
		cfgB := cfg
		cfgB.Budget = shared
		cfgB.LinkWindowBudget = 4 << 20
		l, stop := delayLink(t, rtt, cfg, cfgB)
		defer stop()
		out1, in1 := l.open(t)
		out2, in2 := l.open(t)
		done := make(chan struct{})
		go func() {
			transfer(t, out2, in2, 4<<20)
			close(done)
		}()
		transfer(t, out1, in1, 4<<20)
		<-done
		if sum := window(in1) + window(in2) - 2*(64<<10); sum > 1<<20 {
			t.Errorf("the windows grew by %d together, more than the shared budget of 1 MiB", sum)
		}
		if used := shared.Used(); used > 1<<20 {
			t.Errorf("the shared budget has %d taken, more than its limit", used)
		}
		for _, st := range []*Stream{out1, in1, out2, in2} {
			st.Close()
		}
		if used := shared.Used(); used != 0 {
			t.Errorf("after the streams ended, the shared budget still has %d taken", used)
		}
	})
}

// flooded opens a stream over a link of a 50 ms round trip whose windows
// may grow from 64 KiB to 8 MiB, and floods it from out without end: how
// in is read decides how its window grows. stop ends the link (and with
// it the flood).
func flooded(t *testing.T) (out, in *Stream, stop func()) {
	t.Helper()
	cfg := flowConfig(64 << 10)
	cfg.MaxWindow = 8 << 20
	l, stop := delayLink(t, 50*time.Millisecond, cfg, cfg)
	out, in = l.open(t)
	go writePattern(out, 0, 1<<40, 32<<10, nil)
	return out, in, stop
}

// TestStalledWindowDoesNotGrow: a reader that stops never earns a larger
// window, however long its peer waits: a stalled stream costs its initial
// window and no more.
func TestStalledWindowDoesNotGrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out, in, stop := flooded(t)
		defer stop()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n, c := buffered(in); n != 64<<10 || c > 128<<10 || window(in) != 64<<10 {
			t.Errorf("a stalled stream holds %d bytes in %d, window %d; want its initial window %d", n, c, window(in), 64<<10)
		}
		// A slow reader that keeps the buffer full does not grow it either.
		for range 100 {
			io.ReadFull(in, make([]byte, 1<<10))
			time.Sleep(time.Second)
		}
		if w := window(in); w != 64<<10 {
			t.Errorf("a slow reader's window grew to %d", w)
		}
		out.Close()
		in.Close()
	})
}

// TestClosedStreamGivesBackItsGrowth: a stream's reader may hand bytes on
// after the stream is closed (a WriteTo whose Write returns late); that
// must not grow the window again, or the growth would never be given back
// and the shared budget would drain for good.
func TestClosedStreamGivesBackItsGrowth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := NewBudget(64 << 20)
		cfg := flowConfig(64 << 10)
		cfg.MaxWindow = 1 << 20
		cfg.MinRTT = time.Minute
		cfgB := cfg
		cfgB.Budget = budget
		l := newLink(t, cfg, cfgB)
		defer l.close()
		out, in := l.open(t)
		defer out.Close()
		fastEpoch := func() {
			in.mu.Lock()
			in.epoch = time.Now().Add(-time.Microsecond)
			in.consumed(32<<10, true)
			in.mu.Unlock()
		}
		fastEpoch()
		fastEpoch()
		if used := budget.Used(); used == 0 {
			t.Fatalf("two fast epochs took nothing from the budget; the test needs growth")
		}
		in.Close()
		fastEpoch()
		fastEpoch()
		if used := budget.Used(); used != 0 {
			t.Errorf("after the stream was closed the budget has %d taken, want 0", used)
		}
	})
}

// TestStallCountsPendingOpens: a full stream without flow control holds
// the link, and with it the Acks of opens this side sent; those opens
// wait behind the stall as much as other streams do, so the stall
// timeout must cut the full stream for them too.
func TestStallCountsPendingOpens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = 10 * time.Second
		l := newLink(t, Config{}, Config{MaxBuffer: 64 << 10, StallTimeout: stall})
		defer l.close()
		out, in := l.open(t)
		go writePattern(out, 0, 1<<40, 8<<10, nil)
		synctest.Wait() // b's read loop waits for room in the full stream

		accepted := make(chan *Stream, 1)
		go func() {
			st, _ := l.a.Accept()
			accepted <- st
		}()
		start := time.Now()
		st, err := l.b.Open(context.Background(), "client", "192.0.2.1:1")
		if err != nil {
			t.Fatalf("an open behind a stalled stream failed: %v", err)
		}
		if waited := time.Since(start); waited != stall {
			t.Errorf("the open waited %v, want the stall timeout %v", waited, stall)
		}
		st.Close()
		(<-accepted).Close()
		out.Close()
		in.Close()
	})
}

// TestStreamTakesHalfTheBudget: one stream grows by at most half of the
// shared budget, so a session that was fast once cannot keep every other
// from growing.
func TestStreamTakesHalfTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 100 * time.Millisecond
		budget := NewBudget(4 << 20)
		cfg := flowConfig(64 << 10)
		cfg.MaxWindow = 16 << 20
		cfgB := cfg
		cfgB.Budget = budget
		l, stop := delayLink(t, rtt, cfg, cfgB)
		defer stop()
		out, in := l.open(t)
		transfer(t, out, in, 32<<20)
		if w := window(in); w > 64<<10+2<<20 {
			t.Errorf("one stream grew to %d, more than its start and half the 4 MiB budget", w)
		}
		if used := budget.Used(); used > 2<<20 {
			t.Errorf("one stream took %d of a 4 MiB budget, want at most half", used)
		}
		out.Close()
		in.Close()
	})
}

// TestWindowRamp: at a 200 ms round trip, with the reader keeping up, a
// stream's window grows from 64 KiB to MaxWindow, 128 times as large (as
// rtcp's 256 KiB to 32 MiB), within three round trips of the open, and
// the stream moves a full window in the fourth. When each fast epoch
// doubled the window, that took four and five.
func TestWindowRamp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 200 * time.Millisecond
		budget := NewBudget(64 << 20)
		cfg := flowConfig(64 << 10)
		cfg.MaxWindow = 8 << 20
		cfgB := cfg
		cfgB.Budget = budget
		l, stop := delayLink(t, rtt, cfg, cfgB)
		defer stop()
		out, in := l.open(t)
		go writePattern(out, 0, 1<<40, 64<<10, nil)
		var n atomic.Int64
		read := make(chan struct{})
		go func() {
			defer close(read)
			buf := make([]byte, 64<<10)
			for {
				k, err := in.Read(buf)
				n.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
		var ws []int
		var ns []int64
		for range 6 {
			time.Sleep(rtt)
			ws = append(ws, window(in))
			ns = append(ns, n.Load())
		}
		t.Logf("window and bytes read after each round trip: %v %v", ws, ns)
		if ws[2] != 8<<20 {
			t.Errorf("the window is %d three round trips after the open, want MaxWindow %d (each round trip: %v)", ws[2], 8<<20, ws)
		}
		// 8 MiB granted every eighth moves 8/1.125 MiB per round trip.
		if got := ns[3] - ns[2]; got < 7<<20 {
			t.Errorf("the fourth round trip moved %d bytes, want a full window's 7 MiB (read after each: %v)", got, ns)
		}
		out.Close()
		in.Close()
		<-read
		if used := budget.Used(); used != 0 {
			t.Errorf("after the stream ended, the shared budget still has %d taken", used)
		}
	})
}

// TestIntermittentReaderDoesNotGrow: a reader that empties the buffer
// once a second has caught up each time, and takes a window's bytes at
// once, but only a window per second: at a 50 ms round trip the reader,
// not the window, holds the peer back, and the window stays as it is.
func TestIntermittentReaderDoesNotGrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out, in, stop := flooded(t)
		defer stop()
		buf := make([]byte, 64<<10)
		for range 20 {
			time.Sleep(time.Second)
			synctest.Wait()
			for {
				if n, _ := buffered(in); n == 0 {
					break
				}
				in.Read(buf)
			}
		}
		if w := window(in); w != 64<<10 {
			t.Errorf("a reader that empties the buffer once a second grew its window to %d", w)
		}
		out.Close()
		in.Close()
	})
}

// TestGrowth: a fast epoch grows a window to twice the bandwidth-delay
// product it measured, at least double and at most four times.
func TestGrowth(t *testing.T) {
	for _, c := range []struct {
		win, took int
		d, rtt    time.Duration
		want      int
	}{
		{win: 1 << 20, took: 128 << 10, d: 0, rtt: time.Second, want: 3 << 20},
		{win: 1 << 20, took: 128 << 10, d: time.Millisecond, rtt: 200 * time.Millisecond, want: 3 << 20},              // 25 MiB path
		{win: 1 << 20, took: 128 << 10, d: 50 * time.Millisecond, rtt: 200 * time.Millisecond, want: 1 << 20},         // a 512 KiB path: double
		{win: 1 << 20, took: 128 << 10, d: 16 * time.Millisecond, rtt: 200 * time.Millisecond, want: 3276800 - 1<<20}, // 1.6 MB: to 3.2
	} {
		if got := growth(c.win, c.took, c.d, c.rtt); got != c.want {
			t.Errorf("growth(%d, %d, %v, %v) = %d, want %d", c.win, c.took, c.d, c.rtt, got, c.want)
		}
	}
}

// TestGrantsPastMaxInt: a peer whose window grants add up to more than an
// int holds (on 32-bit linux/386 or arm, grants past 2 GiB that the
// stream has not spent: a yamux window may be up to 4 GiB) leaves the
// stream with all the credit an int holds, not a negative one that made
// its next Write panic (a slice bound below zero).
func TestGrantsPastMaxInt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cb, open := rawPeerSession(t)
		defer s.Close()
		defer cb.Close()
		st := open(1)
		peer := newJSONFramer(cb)
		for range 2 {
			peer.WriteFrame(&Frame{Kind: KindData, ID: 1, Credit: math.MaxInt / 2})
			peer.Flush()
		}
		synctest.Wait() // the read loop has taken both grants
		wrote := make(chan error, 1)
		go func() {
			_, err := st.Write([]byte("after the grants"))
			wrote <- err
		}()
		if f, err := peer.ReadFrame(); err != nil || f.Kind != KindData || string(f.Data) != "after the grants" {
			t.Fatalf("peer read %+v, %v; want the Data", f, err)
		}
		if err := <-wrote; err != nil {
			t.Fatalf("Write after the grants: %v", err)
		}
	})
}
