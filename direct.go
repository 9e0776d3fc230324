package rtcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"rtcp/internal/punch"
	"rtcp/protocol/plan5"
)

// Direct sessions (docs/direct.md, protocol/plan5/SPEC.md "Direct
// sessions"): the DP brokers a session on its relay as always, and tells
// the client and the server each other's address as it observed it and a
// one-time secret. The session starts on the relay at once, its bytes in
// records (move.go), while both sides punch (internal/punch) for at most
// DirectTimeout in the background; it moves to the direct connection if
// the punch proves one. The Connect and the Ack that carry the offer tell
// both sides that the session is brokered (brokersDirect), so nothing on
// the relay needs to: the session's first byte is its first record's.

// DefaultDirectTimeout is how long both sides of a brokered session try
// to reach each other when DirectTimeout is zero. A punch between peers
// that can reach each other takes about two round trips (the simultaneous
// open and the proof), and punch retries a connect that waits 500 ms; one
// second covers round trips up to a few hundred milliseconds. Nobody
// waits for it: the session runs on the relay from the Ack on, and a
// punch that fails within it leaves it there (Conn.DirectError). A
// client's punch starts at the DP's early offer (at the Ack, from a DP
// that sends none), a server's at the open and may run for serverSlack
// times its own; where the DP is near, each waits for the session's
// first answer first, for 0.5-2 ms at most (directgate.go).
const DefaultDirectTimeout = time.Second

// serverSlack is how many DirectTimeouts a server's punch may take
// (startServerPath).
const serverSlack = 3

// secretLen is the size of a brokered session's secret.
const secretLen = 32

// dialFunc is the type of the Dial fields of Dialer and ListenConfig.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// nsFunc runs f where the side's sockets are made: nil runs it in place.
// The tests set it to run f inside a network namespace (internal/natlab).
type nsFunc func(f func() error) error

func (ns nsFunc) run(f func() error) error {
	if ns == nil {
		return f()
	}
	return ns(f)
}

// dpDialer returns the dial of a side's connections to the DP: dial if the
// caller gave one; else, for a side that asks for direct sessions, one
// that binds with punch.Control, so that a punch can bind the same port
// again.
func dpDialer(dial dialFunc, direct bool, ns nsFunc) dialFunc {
	if dial != nil || !direct && ns == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if direct {
			d.Control = dpControl
		}
		var c net.Conn
		err := ns.run(func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// localAddrPort is c's local TCP address, or an invalid one.
func localAddrPort(c net.Conn) netip.AddrPort {
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// directSide is how one side punches: from where, for how long, and how
// its direct connections watch for a dead path.
type directSide struct {
	local     netip.AddrPort // this side's address toward the DP
	timeout   time.Duration  // DirectTimeout, its default filled in
	keepAlive time.Duration  // the side's keepalive period; 0: off
	ns        nsFunc
	// accept: the punch also listens on local for the peer's connect
	// (punch.Config.Accept): the client's, whose local is its session's
	// own; never a server's, whose link's port all its sessions share.
	accept bool
}

// newDirectSide returns the directSide of a connection c to the DP, or nil
// if a punch cannot bind c's address (c is not TCP).
func newDirectSide(c net.Conn, timeout, keepAlive time.Duration, ns nsFunc) *directSide {
	local := localAddrPort(c)
	if !local.IsValid() {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultDirectTimeout
	}
	return &directSide{local: local, timeout: timeout, keepAlive: keepAlivePeriod(keepAlive), ns: ns}
}

// punch tries to reach peer for at most the side's timeout (and ctx), and
// returns a proven direct connection, watched for a dead path.
// l, if not nil, is the side's listener (listen), which the punch takes
// over.
// gate, if not nil, holds the punch back where the DP is near
// (directgate.go); timeout counts from its start.
func (s *directSide) punch(ctx context.Context, peer string, secret []byte, timeout time.Duration, l net.Listener, gate *punchGate) (net.Conn, error) {
	pa, err := netip.ParseAddrPort(peer)
	if err != nil {
		closeListener(l)
		return nil, fmt.Errorf("rtcp: the DP gave the peer's address as %q: %w", peer, err)
	}
	if err := gate.wait(ctx); err != nil {
		closeListener(l)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := punch.Config{Local: s.local, Peer: netip.AddrPortFrom(pa.Addr().Unmap(), pa.Port()), Secret: secret, Accept: s.accept, Listener: l}
	if s.ns != nil {
		cfg.Dial = func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
			var c net.Conn
			err := s.ns(func() (err error) {
				c, err = punch.DialFrom(ctx, laddr, raddr)
				return err
			})
			return c, err
		}
		cfg.Listen = func(ctx context.Context, laddr netip.AddrPort) (net.Listener, error) {
			var l net.Listener
			err := s.ns(func() (err error) {
				l, err = punch.ListenFrom(ctx, laddr)
				return err
			})
			return l, err
		}
	}
	c, err := punch.Punch(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := watchDirect(c, s.keepAlive); err != nil {
		c.Close()
		return nil, err
	}
	resetOnDeath(c)
	return c, nil
}

// listen returns a listener on the side's address for its punch
// (punch.Config.Accept), or nil if it cannot be made (the punch then
// tries again, and does without).
func (s *directSide) listen() net.Listener {
	var l net.Listener
	err := s.ns.run(func() (err error) {
		l, err = punch.ListenFrom(context.Background(), s.local)
		return err
	})
	if err != nil {
		return nil
	}
	return l
}

// closeListener closes l if it is not nil.
func closeListener(l net.Listener) {
	if l != nil {
		l.Close()
	}
}

// watchDirect makes a direct connection fail, with an error, when its path
// goes silent for about twice period: TCP keepalive probes after period of
// silence, and (Linux) TCP_USER_TIMEOUT for data that goes unacknowledged.
// Nothing else watches it: a direct session has no DP and no heartbeat.
// With period zero (the side's KeepAlive negative) it gets Go's default
// TCP keepalive, as the raw leg on the relay has: the punch makes its
// connections without it.
func watchDirect(c net.Conn, period time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if period <= 0 {
		return tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
	}
	if err := tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: period, Interval: period, Count: 1}); err != nil {
		return err
	}
	return setUserTimeout(tc, 2*period)
}

// directOffer is the DP's brokering of one session: set up by the door of
// a client that asked (client's address, secret), and completed by the
// open, with the address of the server's link, if that link takes part.
type directOffer struct {
	client string // the client's address as the DP observed it
	secret []byte
	server string // the server link's address, once the session opened on a link that takes part
	// carried: another DP of the cluster brokered the session (server
	// and secret are its answer, cluster.go): this DP relays the
	// records as bytes, and counts nothing of them.
	carried bool
	// early, if not nil, tells the client the server's address and the
	// secret before the open's answer (Connect EarlyPeer), and offered
	// carries them to the goroutine that calls it (openAside), once, as
	// the open goes to the first link that takes part. Both are set
	// before the open starts (askEarly), and not changed after.
	early   func(server string, secret []byte)
	offered chan earlyOffer // 1-buffered
	// earlySent: opening sent on offered (the open's goroutine's own).
	earlySent bool
}

// earlyOffer is what the DP's early offer tells the client.
type earlyOffer struct {
	server string
	secret []byte
}

// askEarly sets the offer to tell the client the server's address and
// the secret as the open goes out (Connect EarlyPeer), with write.
func (o *directOffer) askEarly(write func(server string, secret []byte)) {
	o.early, o.offered = write, make(chan earlyOffer, 1)
}

// opening tells the client, if it asked (early), the address of the
// server link e and the secret, as the open goes to it: the client's
// punch then starts as the server's does, a round trip before the Ack.
// Only the first link tried: if it fails and another opens the session,
// the Ack names that one, and the client punches again. The open's
// goroutine does not write it: it hands it to the goroutine that waits
// for the open (openAside), which writes it while the open goes out,
// not in front of it (docs/direct.md, "Where the 0.3-0.5 ms went").
func (o *directOffer) opening(server string) {
	if o.offered != nil && !o.earlySent {
		o.earlySent = true
		// A copy: a link that fails under the open makes the next one
		// a new secret in o.secret.
		o.offered <- earlyOffer{server, bytes.Clone(o.secret)}
	}
}

// sendEarly waits for the open's outcome on opened, and meanwhile writes
// the early offer of o (which may be nil) if the open sends one first:
// on the goroutine that waits for the open, so that the open's own
// goroutine goes on to the server at once. An open that ends first ends
// the wait: the answer follows at once and tells the client all.
func sendEarly[T any](o *directOffer, opened <-chan T) T {
	if o != nil && o.offered != nil {
		select {
		case e := <-o.offered:
			o.early(e.server, e.secret)
		case r := <-opened:
			return r
		}
	}
	return <-opened
}

// directKey is the context key of the directOffer of the open under way,
// set only for a link that takes part (linkEntry.direct).
type directKey struct{}

// directRequestKey is the context key of a client's request for a direct
// path, for the open to pass to a link that takes part.
type directRequestKey struct{}

// directOf returns the offer a Link's Open should send, or nil.
func directOf(ctx context.Context) *directOffer {
	o, _ := ctx.Value(directKey{}).(*directOffer)
	return o
}

// connect returns the Connect that opens a session to the server for the
// client name at addr, with the offer's fields if o is not nil.
func (o *directOffer) connect(name, addr string) *plan5.Connect {
	m := &plan5.Connect{N: name, Addr: addr}
	if o != nil {
		m.Peer, m.Secret = o.client, o.secret
	}
	return m
}

// ext is the offer as the Frame.Ext of a mux open, or nil.
func (o *directOffer) ext() any {
	if o == nil {
		return nil
	}
	return o.connect("", "")
}

// newDirectOffer returns the offer for a client at addr.
func newDirectOffer(addr net.Addr) *directOffer {
	o := &directOffer{client: addr.String(), secret: make([]byte, secretLen)}
	rand.Read(o.secret)
	return o
}

// brokersDirect reports whether a Connect or Ack with peer and secret brokers
// a direct session: both sides apply the one rule, so that they agree on
// whether the session's bytes are records (SPEC.md, "Direct sessions").
func brokersDirect(peer string, secret []byte) bool {
	return peer != "" && len(secret) >= punch.MinSecret
}

// brokered reports whether the offer went to the server.
func (o *directOffer) brokered() bool { return o != nil && o.server != "" }

// clientPunch is a client's punch under way: started at the DP's early
// offer (Connect EarlyPeer), a round trip before the Ack, or at the Ack.
// Its outcome goes to the session once the Ack has made one (to), or is
// thrown away if the dial ends without one (abandon).
type clientPunch struct {
	peer      string
	secret    []byte
	gate      *punchGate              // holds the punch back where the DP is near, or nil
	cancel    context.CancelCauseFunc // ends the punch
	to        chan *moveConn          // 1-buffered: the session its outcome goes to
	abandoned chan struct{}           // closed by abandon: no session will come
	done      chan struct{}           // closed once its goroutine has ended
}

// startPunch starts the client's punch to peer with secret in the
// background; l, if not nil, is its listener (listen), which the punch
// takes over. rtt is the time from the Aloha's send to the DP's first
// answer (a round trip to the DP, and its open): where it is short, the
// punch waits for the session's first answer (punchGate).
func (s *directSide) startPunch(peer string, secret []byte, l net.Listener, rtt time.Duration) *clientPunch {
	ctx, cancel := context.WithCancelCause(context.Background())
	p := &clientPunch{peer: peer, secret: secret, cancel: cancel, gate: newPunchGate(rtt, true),
		to: make(chan *moveConn, 1), abandoned: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		dc, err := s.punch(ctx, peer, secret, s.timeout, l, p.gate)
		select {
		case m := <-p.to:
			m.setPunch(dc, err)
		case <-p.abandoned:
			closeIf(dc)
		}
	}()
	return p
}

// errDialEnded is the cause of a punch that its dial abandoned.
var errDialEnded = errors.New("rtcp: the dial ended without this session")

// abandon ends a punch whose dial made no session of it, and waits for
// its goroutine (which closes what the punch made). It may be nil.
func (p *clientPunch) abandon() {
	if p == nil {
		return
	}
	p.cancel(errDialEnded)
	close(p.abandoned)
	<-p.done
}

// serves reports whether the punch is to the peer and with the secret
// of ack, the DP's answer.
func (p *clientPunch) serves(ack *plan5.Ack) bool {
	return p != nil && p.peer == ack.Peer && bytes.Equal(p.secret, ack.Secret)
}

// clientMove completes a client's raw session that the DP brokered, whose
// punch p runs (to the server's address and with the secret that the Ack
// brought, or its early offer): the session runs on the relay at once
// while the punch runs in the background, and moves to the direct
// connection once the punch has proven it (move.go). A failed punch is
// no error: the session stays on the relay, and the Conn says why
// (DirectError).
func (d *Dialer) clientMove(p *clientPunch, rc *rawConn) *Conn {
	log := d.Logger
	m := newMoveConn(rc, p.cancel, func(direct bool, err error) {
		if log == nil {
			return
		}
		if direct {
			log.Debug("rtcp: session moved to the direct path", "server", rc.remote)
		} else {
			log.Debug("rtcp: session stays on the relay", "server", rc.remote, "err", err)
		}
	})
	m.gate = p.gate
	p.to <- m
	return newConn(m, nil)
}

// startServerPath starts this side's punch for a brokered session that
// runs on the relay c.s, and returns c running the moving session over it
// (move.go). c is the session's Conn as the link made it (pending under
// ManualAck: nothing reads or writes the relay before the Conn's first
// use, which answers first). gate, if not nil, holds the punch back
// until the session's first answer (punchGate).
func startServerPath(c *Conn, side *directSide, cm *plan5.Connect, event func(error), gate *punchGate) *Conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	m := newMoveConn(c.s, cancel, func(direct bool, err error) {
		if event != nil {
			event(err)
		}
	})
	m.gate = gate
	go func() {
		// The server's clock starts before the client's (at the open,
		// not at the Ack; under ManualAck, before the application
		// answers), and the client, which needs only the server's
		// proof, may finish the proof first: the server keeps trying
		// up to serverSlack times its DirectTimeout, so that it does not
		// give up on a connection the client has just taken. Close, or
		// the client's 'u', ends it sooner.
		dc, err := side.punch(ctx, cm.Peer, cm.Secret, serverSlack*side.timeout, nil, gate)
		m.setPunch(dc, err)
	}()
	c.s = m
	return c
}

func setDeadlines(c net.Conn, read, write bool, t time.Time) error {
	switch {
	case read && write:
		return c.SetDeadline(t)
	case read:
		return c.SetReadDeadline(t)
	}
	return c.SetWriteDeadline(t)
}

func closeIf(c net.Conn) {
	if c != nil {
		c.Close()
	}
}

// Direct reports whether the session runs on a direct connection between
// client and server (Dialer.Direct, ListenConfig.Direct) rather than
// through the DP: true once both directions of a session that the DP
// brokered have moved (docs/direct.md). It accepts a session under
// ManualAck, as Read does.
func (c *Conn) Direct() bool {
	if c.open() != nil {
		return false
	}
	m, ok := c.s.(*moveConn)
	return ok && m.isDirect()
}

// DirectError says why a session that asked for a direct path runs on the
// relay: the DP did not broker it (nil then; see docs/direct.md), or the
// punch failed (an error wrapping punch.ErrNoPath), or was stopped
// because the peer's failed, or by Close (wrapping context.Canceled and
// the cause). It is nil for a direct session, one whose punch is still
// under way, and one that never asked. Like Direct, it accepts a session
// under ManualAck.
func (c *Conn) DirectError() error {
	if err := c.open(); err != nil {
		return err
	}
	if m, ok := c.s.(*moveConn); ok {
		return m.punchErr()
	}
	return nil
}

// linkDirect is how a server link's brokered sessions punch
// (ListenConfig.Direct): from the link's address toward the DP (a TCP
// transport's control link's, for its data links too).
type linkDirect struct {
	side  *directSide
	event func(error)
	// rtt is the link's shortest round trip to the DP (its handshake,
	// its own timings: mux.Session.RTT), which decides whether a
	// session's punch waits for its first answer (punchGate); nil:
	// unknown, the punch starts at once.
	rtt func() time.Duration
}

// wrap returns c, a session a link of this server accepted, made a
// moving session if the DP brokered it (ext, the session's Connect,
// carries the client's address and the secret).
func (ld *linkDirect) wrap(c *Conn, ext any) *Conn {
	cm, _ := ext.(*plan5.Connect)
	if ld == nil || cm == nil || !brokersDirect(cm.Peer, cm.Secret) {
		return c
	}
	var rtt time.Duration
	if ld.rtt != nil {
		rtt = ld.rtt()
	}
	return startServerPath(c, ld.side, cm, ld.event, newPunchGate(rtt, false))
}

// directEvent reports whether a brokered session moved.
func (l *Listener) directEvent(err error) {
	if err == nil {
		l.log().Debug("rtcp: session moved to the direct path", "name", l.addr.Name)
	} else {
		l.log().Debug("rtcp: session stays on the relay", "name", l.addr.Name, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev.emit(Event{Kind: EventDirect, DP: l.dp, Transport: l.cfg.Transport, Links: len(l.links), Err: err})
}
