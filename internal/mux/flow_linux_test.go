package mux

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// TestGrowthWaitsForTheDestination: a reader that hands bytes to a TCP
// socket looks fast while the kernel takes them, even when the socket's
// peer has stopped reading. A window grown then is what the stream holds
// once it stalls (100 stalled sessions cost the DP 50-100 MB that way), so
// growth needs the destination's peer to have taken half of what an epoch
// handed on.
func TestGrowthWaitsForTheDestination(t *testing.T) {
	cfg := flowConfig(64 << 10)
	cfg.MaxWindow = 1 << 20
	cfg.MinRTT = time.Minute // every epoch below is fast, however slow the machine
	l := newLink(t, cfg, cfg)
	defer l.close()
	out, in := l.open(t)
	defer out.Close()
	defer in.Close()

	// fastEpoch hands 32 KiB to sink's connection c (half the window) in
	// an epoch of a microsecond: fast by any round trip, with the reader
	// caught up. With drain, it waits until c's peer has acknowledged the
	// bytes, as it would have most of an epoch's by its end. It returns
	// the window after it.
	fastEpoch := func(c *net.TCPConn, sink *pusher, drain bool) int {
		t.Helper()
		n, err := c.Write(make([]byte, 32<<10))
		if err != nil {
			t.Fatal(err)
		}
		sink.n.Add(int64(n))
		for deadline := time.Now().Add(10 * time.Second); drain && unsent(sink.raw) > 0 && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		in.sink = sink
		in.epoch = time.Now().Add(-time.Microsecond)
		in.consumed(n, true)
		in.sink = nil
		return in.win
	}
	sinkOf := func(c *net.TCPConn) *pusher {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		return &pusher{raw: rc}
	}

	stalled, peer := flowtest.TCPPair(t)
	defer stalled.Close()
	defer peer.Close()
	peer.SetReadBuffer(4 << 10)
	stalled.SetWriteBuffer(2 << 20)
	sink := sinkOf(stalled)
	for range 8 {
		if w := fastEpoch(stalled, sink, false); w != 64<<10 {
			t.Fatalf("the window grew to %d while its destination's peer took nothing (%d bytes unsent)", w, unsent(sink.raw))
		}
	}

	draining, reader := flowtest.TCPPair(t)
	defer draining.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, reader)
		close(done)
	}()
	defer func() { reader.Close(); <-done }()
	sink = sinkOf(draining)
	fastEpoch(draining, sink, true) // the first epoch with a destination only marks it
	if w := fastEpoch(draining, sink, true); w != 128<<10 {
		t.Errorf("the window is %d after a fast epoch into a destination that keeps up, want it doubled to %d", w, 128<<10)
	}
}

// TestCutReachesABlockedWriteTo: a stalled stream relayed with WriteTo
// into a socket whose peer reads nothing is blocked in the socket's
// Write when the session cuts it; the cut must end that Write, or the
// relay (and the client's connection) would be held for ever. Under
// PushAsync, the push parks first (the stream is idle), and the bytes
// that fill the socket restart it.
func TestCutReachesABlockedWriteTo(t *testing.T) {
	for _, via := range []string{"WriteTo", "PushAsync"} {
		t.Run(via, func(t *testing.T) { testCutReachesABlockedWriteTo(t, via) })
	}
}

func testCutReachesABlockedWriteTo(t *testing.T, via string) {
	const maxBuf = 64 << 10
	l := newLink(t, Config{}, Config{MaxBuffer: maxBuf, StallTimeout: 50 * time.Millisecond})
	defer l.close()
	aOut, aIn := l.open(t)
	bOut, bIn := l.open(t)
	defer bOut.Close()
	defer bIn.Close()

	dest, peer := flowtest.StalledPair(t)
	defer dest.Close()
	defer peer.Close()
	pushed := make(chan error, 1)
	if via == "WriteTo" {
		go func() {
			_, err := aIn.WriteTo(dest)
			pushed <- err
		}()
	} else {
		a := startAsync(aIn, dest)
		if !parkedNow(aIn) {
			t.Fatal("PushAsync on an idle stream did not park at once")
		}
		go func() { pushed <- (<-a.pushed).err }()
	}
	go writePattern(aOut, 0, 1<<40, 8<<10, nil)

	err := <-pushed
	if err == nil || !strings.Contains(err.Error(), "stall timeout") {
		t.Fatalf("%s of the cut stream returned %v, want the cut's error naming the stall timeout", via, err)
	}
	// The other stream goes on.
	if _, err := bOut.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(bIn, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	aOut.Close()
	aIn.Close()
}

// lostBytesCut checks what a stream cut for lost bytes shows at both
// ends: in's reader gets want (what came before the gap), then the cut's
// error, and out, its peer, gets the stream reset with the same reason.
func lostBytesCut(t *testing.T, out, in *Stream, want string) {
	t.Helper()
	got, err := io.ReadAll(in)
	var cut *CutError
	if string(got) != want || !errors.As(err, &cut) {
		t.Fatalf("the stream's reader got %q, %v; want %q, then a CutError", got, err, want)
	}
	// A peer never told would wait for ever: fail instead.
	out.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(out)
	var aborted *AbortError
	if !errors.As(err, &aborted) || aborted.Reason != cut.Msg {
		t.Fatalf("the peer's reader got %v; want the stream aborted with %q", err, cut.Msg)
	}
	if _, err := out.Write([]byte("x")); !errors.As(err, &aborted) {
		t.Errorf("the peer's writer got %v after the abort, want it", err)
	}
}

// TestLostQueuedPipeCutsBothEnds: when WriteTo returns with bytes queued
// in a pipe that does not give them back (here an empty one, as a pipe
// closed or read by mistake would), the stream has lost them: it is cut
// at both ends, not left for its reader to see an error its peer never
// hears of.
func TestLostQueuedPipeCutsBothEnds(t *testing.T) {
	l := newLink(t, Config{}, Config{})
	defer l.close()
	out, in := l.open(t)
	defer out.Close()
	defer in.Close()
	p := getPipe()
	if p == nil {
		t.Skip("no pipe to be had")
	}
	in.s.pipes.take(1)
	in.mu.Lock()
	in.queue = append(in.queue, segment{data: []byte("before"), n: 6}, segment{p: p, n: 100})
	in.queued += 106
	in.npipes++
	in.mu.Unlock()
	// WriteTo returns at once (its deadline has passed), and the queue
	// goes back to the stream's buffer for Read.
	in.SetReadDeadline(time.Unix(1, 0))
	if _, err := in.WriteTo(io.Discard); !errors.Is(err, errTimeout) {
		t.Fatalf("WriteTo returned %v, want its deadline's error", err)
	}
	in.SetReadDeadline(time.Time{})
	lostBytesCut(t, out, in, "before")
}

// TestLostSplicedRestCutsBothEnds: when the bytes of a frame spliced into
// a pipe cannot all be read back for the stream's buffer
// (pushFromPipe), the stream is cut: its reader gets what was read back,
// then the cut's error (not a closed stream, which a relay takes for a
// clean end), and its peer gets the stream reset.
func TestLostSplicedRestCutsBothEnds(t *testing.T) {
	l := newLink(t, Config{}, Config{})
	defer l.close()
	out, in := l.open(t)
	defer out.Close()
	defer in.Close()
	p := getPipe()
	if p == nil {
		t.Skip("no pipe to be had")
	}
	if _, err := syscall.Write(p.w, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	in.pushFromPipe(p, 100) // 90 bytes are missing
	lostBytesCut(t, out, in, "0123456789")
}
