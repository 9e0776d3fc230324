package rtcp

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// When a side's punch starts (docs/direct.md, "Near the DP"). Where the
// DP is far, both punches start at the open (the server's as the open
// reaches it, the client's at the DP's early offer) and are done, between
// hosts near each other, within the round trip that the server's answer
// takes to reach the client: the session can move at its first Write.
// Where the DP is near (a LAN, the same host, the NAT lab without delay),
// there is no such round trip to hide in: the punch's system calls and
// packets run beside the dial's answer and the session's first bytes, on
// the same cores, and made a dial with Direct take 1.4-2.1 times a
// relayed one. So a side whose round trip to the DP is under nearDP holds
// its punch back until the session's first bytes have crossed (the
// client: a Read that returned bytes, its first answer; the server: a
// Write that wrote some, its first answer) or it has moved bulkBytes
// either way, or for at most four round trips to the DP (deferFor:
// 0.5-2 ms).

const (
	// nearDP is the round trip to the DP under which a side defers its
	// punch: about what a punch between near hosts takes on a busy
	// machine (0.2-0.6 ms p50 in the NAT lab), beyond which the punch
	// fits in the round trip before the session's first byte.
	nearDP = time.Millisecond
	// A held-back punch waits for the session's first bytes at most
	// deferRTTs round trips to the DP (the first answer comes about two
	// after the side's measure starts, more on a loaded machine, which
	// makes the client's measure longer too), within minDefer and
	// maxDefer: a session that stays silent longer (or a direction that
	// only writes) gets its punch then, its direct path no more than that
	// later.
	deferRTTs = 4
	minDefer  = 500 * time.Microsecond
	maxDefer  = 2 * time.Millisecond
	// bulkBytes opens a gate too: a side that has written or read that
	// much of the session moves bulk, whose first byte's latency matters
	// less than its path (an upload of a few MiB on loopback is over in
	// a few milliseconds, before its punch had it waited for an answer).
	bulkBytes = 64 << 10
)

// punchGate holds a side's punch back where the DP is near, until the
// session's first bytes have crossed (cross) or deferFor has passed. A
// nil *punchGate holds nothing back: the punch starts at once.
type punchGate struct {
	onRead  bool          // a Read that returned bytes opens it (the client's); else a Write that wrote some (the server's)
	longest time.Duration // how long it waits at most (deferFor)
	moved   atomic.Int64  // bytes this side wrote or read, up to bulkBytes
	once    sync.Once     // closes crossed once
	crossed chan struct{} // closed by cross
}

// dpNear reports whether a round trip to the DP of rtt is short enough
// that a punch waits for the session's first bytes (0: not known, far).
func dpNear(rtt time.Duration) bool {
	return rtt > 0 && rtt < nearDP
}

// newPunchGate returns the gate of a side whose round trip to the DP
// took rtt: nil (the punch starts at once) where the DP is not near, or
// the round trip is not known (rtt <= 0).
func newPunchGate(rtt time.Duration, onRead bool) *punchGate {
	if !dpNear(rtt) {
		return nil
	}
	return &punchGate{onRead: onRead, longest: deferFor(rtt), crossed: make(chan struct{})}
}

// deferFor is how long a punch held back for a round trip to the DP of
// rtt waits at most for the session's first bytes.
func deferFor(rtt time.Duration) time.Duration {
	return min(max(deferRTTs*rtt, minDefer), maxDefer)
}

// cross opens the gate: the session's first bytes have crossed.
func (g *punchGate) cross() {
	g.once.Do(func() { close(g.crossed) })
}

// read tells the gate of a Read of the session that returned n bytes.
func (g *punchGate) read(n int) {
	if g != nil && n > 0 && (g.onRead || g.bulk(n)) {
		g.cross()
	}
}

// wrote tells the gate of a Write of the session that wrote n bytes.
func (g *punchGate) wrote(n int) {
	if g != nil && n > 0 && (!g.onRead || g.bulk(n)) {
		g.cross()
	}
}

// bulk counts n bytes more, and reports whether the side has moved
// bulkBytes.
func (g *punchGate) bulk(n int) bool {
	if g.moved.Load() >= bulkBytes {
		return true
	}
	return g.moved.Add(int64(n)) >= bulkBytes
}

// wait returns once the punch may start: at once for a nil gate; else
// once the session's first bytes have crossed or its longest wait has
// passed.
// If ctx ends first (Close, the peer's 'u'), it returns why, as a stopped
// punch does: an error wrapping ctx's error and its cause.
func (g *punchGate) wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	t := time.NewTimer(g.longest)
	defer t.Stop()
	select {
	case <-g.crossed:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
	}
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != err {
		return fmt.Errorf("rtcp: punch stopped before it began (it waited for the session's first bytes, the DP being near): %w: %w", err, cause)
	}
	return fmt.Errorf("rtcp: punch stopped before it began (it waited for the session's first bytes, the DP being near): %w", err)
}
