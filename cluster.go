package rtcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"rtcp/protocol/plan5"
)

// A cluster is several DiscoverPoints that share one Registry (the
// package rtcp/etcdregistry keeps it on etcd; a MemoryRegistry shared in
// one process works too). Each DP registers the names of the links it
// holds with its Advertise address, so the registry knows, for each name,
// its one owner and every DP that holds links of it. A client may reach
// any DP: the DP that has no link for the name carries the session to a DP
// that has one, as an indirect client of it (one more hop, the raw
// transport, so the bytes are spliced). A server keeps links on several
// DPs (ListenConfig.Listen with a list of addresses) and loses no name
// when one DP dies.
//
// A session carried from one DP to another says so in its Aloha (Via):
// the second DP serves it from its own links only, so a stale registry
// entry can never make two DPs pass a session back and forth.
//
// What a cluster trusts: its registry says where each name is, so
// whoever can write it can send the sessions of any name to an address of
// their choosing (secure it: etcdregistry.Config's TLS and user). What
// such a registry entry cannot do: a DP proves its Peer key with a proof
// bound to the advertised address of the DP it dials (and to the TLS
// connection, on TLS), which no other DP accepts; and a Peer with a
// TLSConfig whose RootCAs trust only the cluster's CA hands sessions only
// to DPs that CA certified. A DP whose Policy lists the carrying DP's key
// in DPs checks a carried session as the client that DP names in the
// proof, so that the name's rules hold after the hop.

// A ClusterRegistry is a Registry that can list every DP holding a name.
// A DiscoverPoint whose Registry is one tries each holder in turn when it
// carries a session to another DP, so a DP that died but whose entry has
// not expired yet costs one failed dial, not the session.
type ClusterRegistry interface {
	Registry
	// Holders returns one Registration per DP that holds name (all of
	// one owner), or ErrNoServer.
	Holders(ctx context.Context, name string) ([]Registration, error)
}

// holders returns the other DPs that hold name, in random order.
func (dp *DiscoverPoint) holders(ctx context.Context, name string) ([]Registration, error) {
	var rs []Registration
	if cr, ok := dp.Registry.(ClusterRegistry); ok {
		var err error
		if rs, err = cr.Holders(ctx, name); err != nil {
			return nil, err
		}
	} else {
		r, err := dp.Registry.Lookup(ctx, name)
		if err != nil {
			return nil, err
		}
		rs = []Registration{r}
	}
	rs = slices.DeleteFunc(rs, func(r Registration) bool { return r.DP == "" || r.DP == dp.Advertise })
	rand.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	return rs, nil
}

// openRemote carries a session for the server name to another DP of the
// cluster that holds it, for the client who, called client, at addr.
// handled is false when the DP is not in a cluster, the session came from
// another DP already, or no other DP holds name: the caller then gives its
// own answer.
func (dp *DiscoverPoint) openRemote(ctx context.Context, name, client, addr string, who principal) (c net.Conn, handled bool, err error) {
	if dp.Advertise == "" || ctx.Value(forwardedKey{}) != nil {
		return nil, false, nil
	}
	rs, err := dp.holders(ctx, name)
	if errors.Is(err, ErrNoServer) || (err == nil && len(rs) == 0) {
		return nil, false, nil
	}
	if err != nil {
		dp.log().Warn("rtcp: registry lookup failed", "server", name, "err", err)
		return nil, true, fmt.Errorf("rtcp: cannot look up server %q in the cluster's registry: %v; retry later", name, err)
	}
	d := dp.Peer
	if d == nil {
		d = &dp.peer
	}
	as := dialAs{name: client, transport: TransportYamux} // the raw client leg: bytes as they are
	// A client that asked for a direct path (and that this DP would
	// broker: its offer) asks the holder through the hop, which only a
	// hop with a key can do: the holder takes the client's address
	// (ClientAddr) only from a proof of its cluster's key.
	offer, _ := ctx.Value(directRequestKey{}).(*directOffer)
	if d.Credential == nil {
		offer = nil
	}
	var errs []error
	for i, r := range rs {
		if offer != nil {
			as.broker = new(hopBroker)
		}
		as.hop = func(a *plan5.Aloha) {
			a.Via = dp.Advertise
			if d.Credential != nil {
				// What the proof covers: the DP it is for, so that no
				// other DP takes it, and the client it is made for.
				a.To, a.ClientKey, a.ClientAddr = r.DP, who.key, addr
			}
		}
		// A DP that died with its host may not even refuse: give each
		// holder an equal share of what is left of the time, so that
		// every one is tried.
		actx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok && i < len(rs)-1 {
			actx, cancel = context.WithTimeout(ctx, time.Until(deadline)/time.Duration(len(rs)-i))
		}
		c, err := d.dial(actx, r.DP, name, as)
		cancel()
		if err == nil {
			dp.log().Debug("rtcp: session carried to another DP", "server", name, "dp", r.DP, "brokered", as.broker.brokered())
			if as.broker.brokered() {
				offer.server, offer.secret, offer.carried = as.broker.peer, as.broker.secret, true
			}
			return unwrapRaw(c), true, nil
		}
		dp.log().Info("rtcp: another DP of the cluster did not take a session", "server", name, "dp", r.DP, "err", err)
		var re *RefusedError
		if errors.As(err, &re) && errors.Is(re, ErrUnauthorized) {
			// The holder's policy refused the client: its answer, as it
			// is, so that the client can tell it from a DP that is down.
			return nil, true, &authError{re.Reason}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, true, fmt.Errorf("rtcp: server %q is registered at %d other DP(s) of the cluster, but none took the session: %w", name, len(rs), errors.Join(errs...))
}

// hopBroker is the answer of the DP that holds a name to a hop that asked
// it to broker a direct path (dialAs.broker): the server's address as
// that DP saw it, and the session's secret; empty if it did not broker.
// The carrying DP passes both on to its client as they are, and relays
// the session's records as bytes: the holder is the broker, and the one
// that reads them (directrelay.go).
type hopBroker struct {
	peer   string
	secret []byte
}

func (b *hopBroker) brokered() bool { return b != nil && b.peer != "" }

// unwrapRaw returns the TCP connection under a raw client Conn, so that
// the relay splices the two hops; any other Conn is returned as it is.
func unwrapRaw(c net.Conn) net.Conn {
	if cc, ok := c.(*Conn); ok {
		if rc, ok := cc.s.(*rawConn); ok {
			if tc, ok := rc.Conn.(*net.TCPConn); ok {
				return tc
			}
		}
	}
	return c
}

// forwardedKey marks the context of a session that another DP carried
// here (sessionRequest.via): it is served from local links only.
type forwardedKey struct{}

// splitDPs splits a comma-separated list of DP addresses.
func splitDPs(addr string) []string {
	var dps []string
	for a := range strings.SplitSeq(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			dps = append(dps, a)
		}
	}
	return dps
}

// listenCluster starts a Listener with links on each of several DPs: a
// member Listener per DP, all feeding l's Accept. It returns once a link
// is up on at least one DP; the members whose first link failed keep
// dialling in the background, as after a lost link.
func (l *Listener) listenCluster(ctx context.Context, dps []string) (net.Listener, error) {
	members := make([]*Listener, len(dps))
	firsts := make([]serverLink, len(dps))
	errs := make([]error, len(dps))
	var wg sync.WaitGroup
	for i, dp := range dps {
		m := &Listener{cfg: l.cfg, dp: dp, addr: l.addr, accept: l.accept, closed: l.closed, flow: l.flow, ev: l.ev}
		members[i] = m
		wg.Go(func() { firsts[i], errs[i] = m.connect(ctx) })
	}
	wg.Wait()
	up := 0
	var taken error
	for i, err := range errs {
		if err == nil {
			up++
		} else if errors.Is(err, ErrNameTaken) && taken == nil {
			taken = fmt.Errorf("DP %s: %w", dps[i], err)
		}
	}
	if taken != nil || up == 0 {
		for _, s := range firsts {
			if s != nil {
				s.drain()
			}
		}
		if taken != nil {
			return nil, l.opErr("listen", taken)
		}
		return nil, l.opErr("listen", fmt.Errorf("no DP of %d could be reached: %w", len(dps), errors.Join(errs...)))
	}
	for i, err := range errs {
		if err != nil {
			l.log().Warn("rtcp: cannot reach DP; retrying", "name", l.addr.Name, "dp", dps[i], "err", err)
		}
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.members = members
	for i, m := range members {
		m.ctx, m.cancel = l.ctx, l.cancel
		m.wg.Add(l.cfg.PoolSize)
		go m.keep(firsts[i])
		for range l.cfg.PoolSize - 1 {
			go m.keep(nil)
		}
	}
	return l, nil
}

// dialCluster dials name through each DP of dps in turn until one opens
// the session: a DP that is down, shutting down or cut off from the rest
// of its cluster passes the dial to the next.
func (d *Dialer) dialCluster(ctx context.Context, dps []string, name string) (net.Conn, error) {
	var errs []error
	for _, dp := range dps {
		c, err := d.DialContext(ctx, dp, name)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
