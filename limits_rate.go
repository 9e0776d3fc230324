package rtcp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"rtcp/internal/relay"
	"rtcp/internal/tcpreset"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what the sessions of a name (NameRule.Limits), or of the
// clients of a key (Policy.KeyLimits), may use at one DP. A zero field is
// no limit. They apply across all of a name's links, and to every door;
// in a cluster each DP applies them to the sessions it relays, so a name
// reached through two DPs may have twice as much (see security.md).
type Limits struct {
	// BytesPerSecond paces the sessions' bytes, together, in each
	// direction on its own: a session over it waits (its peer is held
	// back by flow control), and none is cut.
	BytesPerSecond int64

	// SessionsPerSecond bounds the sessions opened a second, with a
	// burst of one second's worth (at least one). A session over it is
	// refused with a reason.
	SessionsPerSecond float64

	// MaxSessions bounds the sessions open at once. A session over it
	// is refused with a reason.
	MaxSessions int
}

func (l Limits) zero() bool { return l == Limits{} }

func (l Limits) validate() error {
	switch {
	case l.BytesPerSecond < 0:
		return errors.New("bytes per second must not be negative")
	case l.SessionsPerSecond < 0 || math.IsNaN(l.SessionsPerSecond) || math.IsInf(l.SessionsPerSecond, 0):
		return errors.New("sessions per second must be a number, not negative")
	case l.MaxSessions < 0:
		return errors.New("max sessions must not be negative")
	}
	return nil
}

// minBytesBurst is the least burst of a byte limiter: what a session may
// move at once, before it waits.
const minBytesBurst = 16 << 10

// limitBucket is the state of one name's, or one key's, Limits. Its
// fields are guarded by rateLimits.mu; the limiters are safe to use
// without it.
type limitBucket struct {
	lim      Limits
	active   int           // sessions open
	sessions *rate.Limiter // nil: no rate of sessions
	// toServer and toClient pace bytes; nil: not paced.
	toServer, toClient *rate.Limiter
}

func newLimitBucket(l Limits) *limitBucket {
	b := new(limitBucket)
	b.set(l)
	return b
}

// set makes b's limits l. A policy that changes them changes the pace of
// the sessions open (a bandwidth limit removed lets them run free); one
// that adds a bandwidth limit paces the sessions that open next.
func (b *limitBucket) set(l Limits) {
	b.lim = l
	if l.SessionsPerSecond > 0 {
		r, burst := rate.Limit(l.SessionsPerSecond), max(1, int(math.Ceil(l.SessionsPerSecond)))
		if b.sessions == nil {
			b.sessions = rate.NewLimiter(r, burst)
		} else {
			b.sessions.SetLimit(r)
			b.sessions.SetBurst(burst)
		}
	} else {
		b.sessions = nil
	}
	if l.BytesPerSecond > 0 {
		r, burst := rate.Limit(l.BytesPerSecond), int(max(l.BytesPerSecond/10, minBytesBurst))
		if b.toServer == nil {
			b.toServer = rate.NewLimiter(r, burst)
			b.toClient = rate.NewLimiter(r, burst)
		} else {
			for _, lr := range []*rate.Limiter{b.toServer, b.toClient} {
				lr.SetLimit(r)
				lr.SetBurst(burst)
			}
		}
	} else if b.toServer != nil {
		b.toServer.SetLimit(rate.Inf)
		b.toClient.SetLimit(rate.Inf)
		b.toServer, b.toClient = nil, nil
	}
}

// idle reports whether b holds nothing worth keeping: no session open,
// and a full allowance of sessions. Guarded by rateLimits.mu.
func (b *limitBucket) idle(now time.Time) bool {
	return b.active == 0 && (b.sessions == nil || b.sessions.TokensAt(now) >= float64(b.sessions.Burst()))
}

// rateLimits are the DP's buckets of Limits, by name and by key. Its lock
// is taken alone, never with another of the DP's.
type rateLimits struct {
	mu      sync.Mutex // guards names, keys, sweepAt and each bucket's active
	names   map[string]*limitBucket
	keys    map[string]*limitBucket
	sweepAt int // sweep idle buckets when a map grows to this

	pacedNanos atomic.Int64 // time sessions waited for their bytes' limits
}

const minLimitSweep = 1024

// update brings every bucket to the Limits of pol, so that a SetPolicy
// changes the pace of the sessions open (and a limit removed lets them
// run free), as the Limits documentation says.
func (r *rateLimits) update(pol *Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, b := range r.names {
		var l Limits
		if pol != nil {
			if rule := pol.rule(name); rule != nil {
				l = rule.Limits
			}
		}
		if b.lim != l {
			b.set(l)
		}
	}
	for key, b := range r.keys {
		var l Limits
		if pol != nil {
			l = pol.KeyLimits[key]
		}
		if b.lim != l {
			b.set(l)
		}
	}
}

// bucketLocked returns the bucket of id in m for l, made or brought up
// to date.
func (r *rateLimits) bucketLocked(m *map[string]*limitBucket, id string, l Limits) *limitBucket {
	if *m == nil {
		*m = make(map[string]*limitBucket)
	}
	b := (*m)[id]
	if b != nil {
		if b.lim != l {
			b.set(l) // the policy changed
		}
		return b
	}
	if len(*m) >= max(r.sweepAt, minLimitSweep) {
		// Names and keys that come and go leave buckets behind: drop
		// those that hold nothing, at most once per doubling.
		now := time.Now()
		for k, v := range *m {
			if v.idle(now) {
				delete(*m, k)
			}
		}
		r.sweepAt = 2 * len(*m)
	}
	b = newLimitBucket(l)
	(*m)[id] = b
	return b
}

// openLimited is openSession under the Limits of name and of who's key:
// it refuses a session over a MaxSessions or SessionsPerSecond, and
// paces the bytes of the session it opens under a BytesPerSecond. With
// the session it returns unlimit, which takes the session out of the
// Limits' counts: its caller calls it once, when the session has ended
// (openRequested's endSession). It is nil when no Limits apply.
//
// Only a session whose bytes are paced is wrapped (pacedConn); one under
// limits of sessions alone is the link's own connection, and the relay
// keeps its fast paths (splice, a stream's push).
func (dp *DiscoverPoint) openLimited(ctx context.Context, name, client, addr string, who principal) (c net.Conn, unlimit func(), err error) {
	var nl, kl Limits
	if pol := dp.policy(); pol != nil {
		if r := pol.rule(name); r != nil {
			nl = r.Limits
		}
		if who.key != "" {
			kl = pol.KeyLimits[who.key]
		}
	}
	if nl.zero() && kl.zero() {
		c, err := dp.openSession(ctx, name, client, addr, who)
		return c, nil, err
	}
	buckets, err := dp.beginLimited(name, who.key, nl, kl)
	if err != nil {
		return nil, nil, err
	}
	c, err = dp.openSession(ctx, name, client, addr, who)
	if err != nil {
		dp.endLimited(buckets)
		return nil, nil, err
	}
	return dp.paced(c, buckets), func() { dp.endLimited(buckets) }, nil
}

// beginLimited counts a session in the buckets of name (nl) and key (kl),
// or refuses it.
func (dp *DiscoverPoint) beginLimited(name, key string, nl, kl Limits) ([]*limitBucket, error) {
	r := &dp.limits
	r.mu.Lock()
	defer r.mu.Unlock()
	var bs []*limitBucket
	var whose []string
	if !nl.zero() {
		bs = append(bs, r.bucketLocked(&r.names, name, nl))
		whose = append(whose, fmt.Sprintf("server %q", name))
	}
	if !kl.zero() {
		bs = append(bs, r.bucketLocked(&r.keys, key, kl))
		whose = append(whose, fmt.Sprintf("the clients of key %q", key))
	}
	for i, b := range bs {
		if b.lim.MaxSessions > 0 && b.active >= b.lim.MaxSessions {
			return nil, &limitError{refusedLimitSessions, fmt.Sprintf(
				"rtcp: %s already %s %d sessions open at this DP, the limit of the DP's policy (max_sessions); retry later",
				whose[i], has(i), b.active)}
		}
	}
	now := time.Now()
	for i, b := range bs {
		if b.sessions != nil && !b.sessions.AllowN(now, 1) {
			return nil, &limitError{refusedLimitRate, fmt.Sprintf(
				"rtcp: %s opened %g sessions a second at this DP, the limit of the DP's policy (sessions_per_second); retry later",
				whose[i], b.lim.SessionsPerSecond)}
		}
	}
	for _, b := range bs {
		b.active++
	}
	return bs, nil
}

// has is "has" for a name's bucket (0) and "have" for a key's clients.
func has(i int) string {
	if i == 0 {
		return "has"
	}
	return "have"
}

func (dp *DiscoverPoint) endLimited(bs []*limitBucket) {
	dp.limits.mu.Lock()
	defer dp.limits.mu.Unlock()
	for _, b := range bs {
		b.active--
	}
}

// paced returns the server's side of a session, c, with its bytes paced
// by the buckets of bs that pace bytes; c itself if none does. The relay
// then copies through it, on its own goroutines, rather than by the
// stream's fast paths: a session that waits holds up no other session
// of its link.
func (dp *DiscoverPoint) paced(c net.Conn, bs []*limitBucket) net.Conn {
	pc := &pacedConn{Conn: c, dp: dp, chunk: math.MaxInt}
	dp.limits.mu.Lock()
	for _, b := range bs {
		if b.toServer != nil {
			pc.toServer = append(pc.toServer, b.toServer)
			pc.toClient = append(pc.toClient, b.toClient)
			pc.chunk = min(pc.chunk, b.toServer.Burst())
		}
	}
	dp.limits.mu.Unlock()
	if len(pc.toServer) == 0 {
		return c
	}
	pc.ctx, pc.cancel = context.WithCancel(dp.ctx)
	return pc
}

// pacedConn is the server's side of a session under a BytesPerSecond:
// Write (the client's bytes) and Read (the server's) wait for their
// limiters. The session's counts in its Limits are not its to release:
// openLimited's unlimit does, at the session's end.
type pacedConn struct {
	net.Conn
	dp                 *DiscoverPoint
	toServer, toClient []*rate.Limiter
	chunk              int // the most bytes one wait covers: the least burst
	ctx                context.Context
	cancel             context.CancelFunc
}

var errPacedDPClosed = errors.New("rtcp: session cut while paced: the DP is closing")

func (c *pacedConn) wait(ls []*rate.Limiter, n int) error {
	if n == 0 {
		return nil
	}
	start := time.Now()
	defer func() { c.dp.limits.pacedNanos.Add(int64(time.Since(start))) }()
	for _, l := range ls {
		for left := n; left > 0; {
			// A policy changed since the session began may have made
			// the burst smaller than the chunk: wait for it in parts.
			k := min(left, max(l.Burst(), 1))
			if err := l.WaitN(c.ctx, k); err != nil {
				if c.dp.ctx.Err() != nil {
					// The DP is closing (Close ends its context before
					// it cuts the connections): a cut, which the relay
					// passes on as one, never a clean end of a session
					// whose bytes were still on their way.
					return errPacedDPClosed
				}
				if c.ctx.Err() != nil {
					return fmt.Errorf("rtcp: session closed while paced: %w", net.ErrClosed)
				}
				// The burst shrank between Burst and WaitN (a new
				// policy): wait again for the new one.
				continue
			}
			left -= k
		}
	}
	return nil
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n, err := c.Conn.Read(p)
	if werr := c.wait(c.toClient, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

func (c *pacedConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), c.chunk)
		if err := c.wait(c.toServer, k); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func (c *pacedConn) Close() error {
	c.cancel() // ends the waits of Read and Write
	return c.Conn.Close()
}

// SetReset sets whether the TCP socket under the session, if any (a tcp
// transport's data link), ends with a reset: the relay clears it for a
// session that ends cleanly, which it cannot see through pacedConn.
func (c *pacedConn) SetReset(on bool) {
	if r, ok := c.Conn.(interface{ SetReset(on bool) }); ok {
		r.SetReset(on) // a data link over TLS (releaseConn)
		return
	}
	tcpreset.SetReset(tcpreset.Under(c.Conn), on)
}

// CloseWrite passes a half-close on, so that it crosses the relay.
func (c *pacedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Abort cuts the session with err, as the relay cuts what it wraps: a
// stream with err, a TCP connection with a reset (under TLS too, with no
// goodbye first), a WebSocket with its own Abort (relay.CutOff).
func (c *pacedConn) Abort(err error) {
	relay.CutOff(c.Conn, err)
	c.Close()
}
