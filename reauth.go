package rtcp

import (
	"net"
	"sync"
)

// A policy changed with SetPolicy applies to what is open already, not
// only to what comes next: every server link and every client session
// that the new policy refuses ends at once, and everything it still
// allows goes on untouched. The DP knows each link's principal from its
// link table, and each client session's from clientSessions.

// clientSessions are the client sessions open at a DP, each with what the
// policy checks it as, so that SetPolicy can end those it no longer
// allows.
type clientSessions struct {
	mu sync.Mutex // guards m; a leaf: nothing is called with it held
	m  map[*clientSession]struct{}
}

// clientSession is one client's session: who, from addr, to the server
// name; end ends it with the reason.
type clientSession struct {
	who  principal
	name string
	addr net.Addr
	end  func(reason error)
}

// policeSession tracks a client session until the returned function is
// called. Call it before the session's check against the policy, so that
// a SetPolicy between the two cannot miss it.
func (dp *DiscoverPoint) policeSession(who principal, name string, addr net.Addr, end func(reason error)) (done func()) {
	cs := &clientSession{who: who, name: name, addr: addr, end: end}
	s := &dp.auth.sessions
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*clientSession]struct{})
	}
	s.m[cs] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.m, cs)
		s.mu.Unlock()
	}
}

// enforcePolicy ends the server links and the client sessions that the
// policy in force no longer allows; it returns how many of each.
func (dp *DiscoverPoint) enforcePolicy() (links, sessions int) {
	pol := dp.policy()
	if pol == nil {
		return 0, 0
	}
	for _, e := range dp.links.entries() {
		if e.policed && !dp.linkAllowed(e) {
			links++
		}
	}
	s := &dp.auth.sessions
	var refused []*clientSession
	var reasons []error
	s.mu.Lock()
	for cs := range s.m {
		if err := pol.authorizeClient(cs.who, cs.name, cs.addr); err != nil {
			refused = append(refused, cs)
			reasons = append(reasons, err)
		}
	}
	s.mu.Unlock()
	for i, cs := range refused {
		dp.log().Warn("rtcp: closing a session the policy no longer allows", "server", cs.name, "client", cs.addr, "who", cs.who, "reason", reasons[i])
		end := func() { cs.end(reasons[i]) }
		if !dp.g.Go(end) { // ending may wait for the client: not here
			end()
		}
	}
	return links, len(refused)
}

// checkSecret refuses a peer that proved a secret its key no longer has:
// giving a key a new secret cuts whoever proved the old one.
func (pol *Policy) checkSecret(who principal) error {
	if who.secret == "" {
		return nil
	}
	key := who.key
	if who.by != "" {
		key = who.by
	}
	if s, ok := pol.Keys[key]; ok && string(s) != who.secret {
		return unauthorized("the secret of key %q has changed since this peer proved it; connect again with the new one", key)
	}
	return nil
}
