package mux

import (
	"testing"
	"time"
)

// TestGrowthWaitsForTheDestination: a reader that hands bytes to a TCP
// socket looks fast while the kernel takes them, even when the socket's
// peer has stopped reading. A window grown then is what the stream holds
// once it stalls (100 stalled sessions cost the DP 50-100 MB that way), so
// growth waits while the destination still holds half a window unsent.
func TestGrowthWaitsForTheDestination(t *testing.T) {
	cfg := flowConfig(64 << 10)
	cfg.MaxWindow = 1 << 20
	l := newLink(t, cfg, cfg)
	defer l.close()
	out, in := l.open(t)
	defer out.Close()
	defer in.Close()

	stalled, peer := tcpPair(t)
	defer stalled.Close()
	defer peer.Close()
	peer.SetReadBuffer(4 << 10)
	stalled.SetWriteBuffer(2 << 20)
	if _, err := stalled.Write(make([]byte, 512<<10)); err != nil {
		t.Fatal(err)
	}
	rc, err := stalled.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if n := unsent(rc); n < 64<<10 {
		t.Fatalf("the stalled socket holds %d bytes unsent; the test needs more than half a window", n)
	}

	// An epoch in which the reader caught up and took half the window in
	// a microsecond: fast by any round trip.
	fastEpoch := func(sink *pusher) int {
		in.mu.Lock()
		defer in.mu.Unlock()
		in.sink = sink
		in.epoch = time.Now().Add(-time.Microsecond)
		in.consumed(32<<10, true)
		in.sink = nil
		return in.win
	}
	if w := fastEpoch(&pusher{raw: rc}); w != 64<<10 {
		t.Errorf("the window grew to %d while its destination held %d bytes unsent", w, unsent(rc))
	}

	idle, idlePeer := tcpPair(t)
	defer idle.Close()
	defer idlePeer.Close()
	idleRC, err := idle.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if w := fastEpoch(&pusher{raw: idleRC}); w != 128<<10 {
		t.Errorf("the window is %d after a fast epoch into a destination that keeps up, want it doubled to %d", w, 128<<10)
	}
}
