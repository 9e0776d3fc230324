package rtcp

import (
	"context"
	"fmt"
	"sync"
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
// Write that wrote some, its first answer) or maxDefer has passed.

const (
	// nearDP is the round trip to the DP under which a side defers its
	// punch: about what a punch between near hosts takes on a busy
	// machine (0.2-0.6 ms p50 in the NAT lab), beyond which the punch
	// fits in the round trip before the session's first byte.
	nearDP = time.Millisecond
	// maxDefer bounds a deferred punch's wait for the session's first
	// bytes: a round trip to a near DP and a server's answer of a
	// millisecond or so, with room to spare; a session that stays silent
	// longer (or one direction that only writes) gets its punch then,
	// the direct path no more than this later.
	maxDefer = 2 * time.Millisecond
)

// punchGate holds a side's punch back where the DP is near, until the
// session's first bytes have crossed (cross) or maxDefer has passed. A
// nil *punchGate holds nothing back: the punch starts at once.
type punchGate struct {
	onRead  bool          // a Read that returned bytes opens it (the client's); else a Write that wrote some (the server's)
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
	return &punchGate{onRead: onRead, crossed: make(chan struct{})}
}

// cross opens the gate: the session's first bytes have crossed.
func (g *punchGate) cross() {
	g.once.Do(func() { close(g.crossed) })
}

// read tells the gate of a Read of the session that returned n bytes.
func (g *punchGate) read(n int) {
	if g != nil && g.onRead && n > 0 {
		g.cross()
	}
}

// wrote tells the gate of a Write of the session that wrote n bytes.
func (g *punchGate) wrote(n int) {
	if g != nil && !g.onRead && n > 0 {
		g.cross()
	}
}

// wait returns once the punch may start: at once for a nil gate; else
// once the session's first bytes have crossed or maxDefer has passed.
// If ctx ends first (Close, the peer's 'u'), it returns why, as a stopped
// punch does: an error wrapping ctx's error and its cause.
func (g *punchGate) wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	t := time.NewTimer(maxDefer)
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
