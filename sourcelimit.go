package rtcp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// Defaults of the DP's bounds per source address (DiscoverPoint's
// MaxHandshakesPerSource and MaxAuthFailuresPerSource).
const (
	defaultMaxHandshakesPerSource   = 64
	defaultMaxAuthFailuresPerSource = 30 // a minute
)

// sourceLimits bounds what one source address may make the DP hold
// before it is admitted: its connections still in their handshake (TLS,
// Aloha, the key's challenge), each of which pins buffers until the
// handshake timeout, and its failed authentications, which it may not
// repeat faster than a rate. A source is an IPv4 address or an IPv6 /64
// (what one host is usually given). Loopback sources are not bounded:
// they are this host's own programs, or a proxy in front of the DP
// (wss:// behind a web server), whose clients all share its address - a
// bound there would let one of them shut out the others. Nor are
// connections whose address is not IP (in-memory pipes).
type sourceLimits struct {
	maxPending    int  // 0: no bound
	maxFails      int  // a minute; 0: no bound
	boundLoopback bool // tests bound loopback sources too

	mu      sync.Mutex
	sources map[netip.Prefix]*source
	pending map[net.Conn]netip.Prefix // connections in their handshake, and their source
	sweepAt int                       // len(sources) at which to drop the idle ones
}

// source is what the DP knows of one source address.
type source struct {
	pending int       // connections in their handshake
	fails   float64   // failed authentications not yet forgiven; maxFails a minute are
	at      time.Time // when fails was last brought up to date
	refused bool      // its last connection was refused: log only the first
}

// init sets the bounds from the DiscoverPoint's fields: zero means the
// default, negative none.
func (s *sourceLimits) init(maxPending, maxFails int) {
	bound := func(v, def int) int {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		}
		return v
	}
	s.maxPending = bound(maxPending, defaultMaxHandshakesPerSource)
	s.maxFails = bound(maxFails, defaultMaxAuthFailuresPerSource)
	s.sources = make(map[netip.Prefix]*source)
	s.pending = make(map[net.Conn]netip.Prefix)
	s.sweepAt = 1024
}

// bounded returns the source of a, unless it is not to be bounded.
func (s *sourceLimits) bounded(a net.Addr) (netip.Prefix, bool) {
	key, ok := sourceOf(a)
	if !ok || key.Addr().IsLoopback() && !s.boundLoopback {
		return netip.Prefix{}, false
	}
	return key, true
}

// sourceOf returns the source of a connection's remote address.
func sourceOf(a net.Addr) (netip.Prefix, bool) {
	ip, ok := addrIP(a)
	if !ok || !ip.IsValid() {
		return netip.Prefix{}, false
	}
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	return netip.PrefixFrom(ip, 64).Masked(), true
}

// forgive brings src's failures up to date: maxFails a minute are
// forgiven.
func (s *sourceLimits) forgive(src *source, now time.Time) {
	if src.fails > 0 {
		src.fails = max(0, src.fails-now.Sub(src.at).Minutes()*float64(s.maxFails))
	}
	src.at = now
}

// enter counts c as a connection in its handshake, or refuses it. On
// refusal, err says why, and first is true for the source's first
// sourceLocked returns key's source, made if it has none, with its old
// failures forgiven as of now. s.mu is held.
func (s *sourceLimits) sourceLocked(key netip.Prefix, now time.Time) *source {
	src := s.sources[key]
	if src == nil {
		s.sweepLocked(now)
		src = &source{at: now}
		s.sources[key] = src
	}
	s.forgive(src, now)
	return src
}

// refusal in a row (the one to log loudly).
func (s *sourceLimits) enter(c net.Conn) (first bool, err error) {
	key, ok := s.bounded(c.RemoteAddr())
	if !ok || s.maxPending == 0 && s.maxFails == 0 {
		return false, nil
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.sourceLocked(key, now)
	switch {
	case s.maxFails > 0 && src.fails >= float64(s.maxFails):
		err = &limitError{refusedSourceAuthFailures, fmt.Sprintf(
			"rtcp: too many failed authentications from %v, more than %d a minute (MaxAuthFailuresPerSource); check the key and its secret, and retry in a minute",
			key, s.maxFails)}
	case s.maxPending > 0 && src.pending >= s.maxPending:
		err = &limitError{refusedSourceHandshakes, fmt.Sprintf(
			"rtcp: %d connections from %v are in their handshake already, the limit (MaxHandshakesPerSource); retry later",
			src.pending, key)}
	}
	if err != nil {
		first = !src.refused
		src.refused = true
		return first, err
	}
	src.refused = false
	src.pending++
	s.pending[c] = key
	return false, nil
}

// over ends c's handshake: admitted, refused or gone. It may be called
// more than once.
func (s *sourceLimits) over(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.pending[c]
	if !ok {
		return
	}
	delete(s.pending, c)
	if src := s.sources[key]; src != nil {
		src.pending--
	}
}

// failed counts a failed authentication from c's source.
func (s *sourceLimits) failed(c net.Conn) {
	key, ok := s.bounded(c.RemoteAddr())
	if !ok || s.maxFails == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.sourceLocked(key, now)
	src.fails = min(src.fails+1, float64(s.maxFails))
}

// sweepLocked forgets the sources that hold nothing, once there are
// twice as many as after the last sweep: the table stays as big as the
// sources that are in a handshake or were refused within the minute.
func (s *sourceLimits) sweepLocked(now time.Time) {
	if len(s.sources) < s.sweepAt {
		return
	}
	for key, src := range s.sources {
		s.forgive(src, now)
		if src.pending == 0 && src.fails == 0 {
			delete(s.sources, key)
		}
	}
	s.sweepAt = max(1024, 2*len(s.sources))
}

// enterHandshake admits c, just accepted, to its handshake unless its
// source is over a bound; then it refuses c and returns false. Call
// handshakeOver when the peer is admitted, or c is done.
func (dp *DiscoverPoint) enterHandshake(c net.Conn) bool {
	first, refusal := dp.counts.sources.enter(c)
	if refusal == nil {
		return true
	}
	dp.refusedOpen("", refusal) // before the peer names anything
	if first {
		dp.log().Warn("rtcp: source over a bound; refusing its connections", "remote", c.RemoteAddr(), "reason", refusal)
	} else {
		dp.log().Debug("rtcp: connection refused", "remote", c.RemoteAddr(), "reason", refusal)
	}
	if dp.TLSConfig != nil {
		return false // no TLS spent on it; the peer's handshake fails
	}
	// Read its Aloha first, briefly and in a small buffer: an answer to
	// a peer that is still writing could be lost to a reset.
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := plan5link.ReadAloha(plan5.NewReader(c, 4096)); err == nil {
		dp.refuse(c, refusal.Error())
	}
	return false
}

// handshakeOver ends c's handshake for its source's bound: admitted,
// refused, or done. c may be the TLS connection over the one accepted.
func (dp *DiscoverPoint) handshakeOver(c net.Conn) { dp.counts.sources.over(netConn(c)) }

// authFailed counts a failed authentication from c's source: a wrong key
// or proof, no key where one is needed.
func (dp *DiscoverPoint) authFailed(c net.Conn) { dp.counts.sources.failed(netConn(c)) }
