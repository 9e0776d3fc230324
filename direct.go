package rtcp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"rtcp/internal/deadline"
	"rtcp/internal/punch"
	"rtcp/protocol/plan5"
)

// Direct sessions (docs/direct.md, protocol/plan5/SPEC.md "Direct
// sessions"): the DP brokers a session on its relay as always, and tells
// the client and the server each other's address as it observed it and a
// one-time secret. Both punch (internal/punch) for at most DirectTimeout;
// then the client writes one marker byte on the relayed session, before
// any byte of the application: markerDirect if its punch came up (it then
// closes the relayed session and uses the direct connection), else
// markerRelay (both stay on the relay). The server reads the marker
// before it hands out a byte, and follows it.

// The marker bytes. A client writes markerFramed at once, and its session
// runs framed on the relay until it moves to the direct connection
// (move.go); markerDirect and markerRelay are those of clients that
// waited for their punch before their session began (up to rtcp 0.x of
// 2026-12-05), which servers and DPs still follow.
const (
	markerDirect = 'D'
	markerRelay  = 'R'
	markerFramed = 'F'
)

// DefaultDirectTimeout is how long both sides of a brokered session try
// to reach each other when DirectTimeout is zero. A punch between peers
// that can reach each other takes about two round trips (the simultaneous
// open and the proof), and punch retries a connect that waits 500 ms; one
// second covers round trips up to a few hundred milliseconds, and is what
// a client whose NATs do not allow a direct path waits before its session
// starts on the relay.
const DefaultDirectTimeout = time.Second

// serverSlack is how many DirectTimeouts a server's punch may take: the
// client's marker normally ends it well before (startServerPath).
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
func (s *directSide) punch(ctx context.Context, peer string, secret []byte, timeout time.Duration) (net.Conn, error) {
	pa, err := netip.ParseAddrPort(peer)
	if err != nil {
		return nil, fmt.Errorf("rtcp: the DP gave the peer's address as %q: %w", peer, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := punch.Config{Local: s.local, Peer: netip.AddrPortFrom(pa.Addr().Unmap(), pa.Port()), Secret: secret}
	if s.ns != nil {
		cfg.Dial = func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
			var c net.Conn
			err := s.ns(func() (err error) {
				c, err = punch.DialFrom(ctx, laddr, raddr)
				return err
			})
			return c, err
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

// watchDirect makes a direct connection fail, with an error, when its path
// goes silent for about twice period: TCP keepalive probes after period of
// silence, and (Linux) TCP_USER_TIMEOUT for data that goes unacknowledged.
// Nothing else watches it: a direct session has no DP and no heartbeat.
func watchDirect(c net.Conn, period time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok || period <= 0 {
		return nil
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
// whether a marker begins the session (SPEC.md, "Direct sessions").
func brokersDirect(peer string, secret []byte) bool {
	return peer != "" && len(secret) >= punch.MinSecret
}

// brokered reports whether the offer went to the server.
func (o *directOffer) brokered() bool { return o != nil && o.server != "" }

// relayMarker reads the client's marker on a brokered session, passes it
// to the server, and counts the outcome; false: the session ends here.
func (dp *DiscoverPoint) relayMarker(client, server net.Conn, name string) bool {
	dp.counts.directBrokered.Add(1)
	var b [1]byte
	client.SetReadDeadline(time.Now().Add(dp.HandshakeTimeout))
	_, err := io.ReadFull(client, b[:])
	client.SetReadDeadline(time.Time{})
	if err == nil && b[0] != markerDirect && b[0] != markerRelay && b[0] != markerFramed {
		err = fmt.Errorf("the client sent %q, not a direct-path marker", b[0])
	}
	if err == nil {
		_, err = server.Write(b[:])
	}
	if err != nil {
		dp.log().Info("rtcp: brokered session ended before its path was chosen", "server", name, "client", client.RemoteAddr(), "err", err)
		return false
	}
	switch b[0] {
	case markerDirect:
		dp.counts.directSessions.Add(1)
	case markerRelay:
		dp.counts.directFallbacks.Add(1)
	default:
		// A framed session moves, or not, in records that the DP relays
		// as bytes without reading them: it counts as moving.
		dp.counts.directMoving.Add(1)
		dp.log().Debug("rtcp: brokered session starts on the relay, and may move", "server", name, "client", client.RemoteAddr())
		return true
	}
	dp.log().Debug("rtcp: brokered session chose its path", "server", name, "client", client.RemoteAddr(), "direct", b[0] == markerDirect)
	return true
}

// clientMove completes a client's raw session that the DP brokered (ack
// carries the server's address and the secret): it writes markerFramed on
// rc and returns the session, which runs on the relay at once while the
// punch runs in the background, and moves to the direct connection once
// the punch has proven it (move.go). A failed punch is no error: the
// session stays on the relay, and the Conn says why (DirectError).
func (d *Dialer) clientMove(side *directSide, rc *rawConn, ack *plan5.Ack) (*Conn, error) {
	if _, err := rc.Write([]byte{markerFramed}); err != nil {
		rc.abort()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := d.Logger
	m := newMoveConn(rc, cancel, func(direct bool, err error) {
		if log == nil {
			return
		}
		if direct {
			log.Debug("rtcp: session moved to the direct path", "server", rc.remote)
		} else {
			log.Debug("rtcp: session stays on the relay", "server", rc.remote, "err", err)
		}
	})
	go func() {
		dc, err := side.punch(ctx, ack.Peer, ack.Secret, side.timeout)
		m.setPunch(dc, err)
	}()
	c := newConn(m, nil)
	c.path = &sessionPath{}
	return c, nil
}

// sessionPath is what a Conn that asked for a direct path knows of it.
// A server's session learns it from the client's marker, at its first
// use (serverPath); a client's knows it when Dial returns.
type sessionPath struct {
	direct bool  // the session runs on a direct connection
	err    error // why it stays on the relay; or, with failed, why it failed
	failed bool  // the session could not continue: every use returns err

	server *serverPath // nil on a client's session
}

// serverPath is a server's session that the DP brokered: it starts on the
// relay (relay, Conn.s until chosen) while this side punches, and once
// the session is accepted, a goroutine of its own (run) reads the client's
// marker and moves the Conn to the path it names. Calls on the Conn wait
// for that, within their deadlines, which are kept meanwhile and set on the
// path chosen.
type serverPath struct {
	relay  stream
	cancel context.CancelFunc // ends the punch
	punch  chan punchResult   // cap 1: the punch's outcome
	event  func(err error)    // reports the outcome (ListenConfig.OnEvent)

	start sync.Once
	ready chan struct{} // closed once the path is chosen (Conn.s final)

	relayOnce sync.Once   // closeRelay
	relayErr  error       // what the relay's Close returned; set in relayOnce
	closed    atomic.Bool // the Conn was closed or aborted before that

	// rdl and wdl bound the calls that wait for the choice (wait); they
	// follow rd and wd.
	rdl, wdl *deadline.Deadline

	mu       sync.Mutex // guards the fields below, and Conn.s's replacement
	rd, wd   time.Time  // deadlines set before the path was chosen
	resolved bool       // ready is closed, and deadlines go to Conn.s
}

type punchResult struct {
	c   net.Conn
	err error
}

// startServerPath starts this side's punch for a brokered session that
// runs on relay, and returns the Conn that will follow the client's
// marker. c is the session's Conn as the link made it (pending under
// ManualAck).
func startServerPath(c *Conn, side *directSide, cm *plan5.Connect, event func(error)) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	sp := &serverPath{relay: c.s, cancel: cancel, punch: make(chan punchResult, 1), event: event,
		ready: make(chan struct{}), rdl: deadline.New(), wdl: deadline.New()}
	go func() {
		// The server's clock starts before the client's (at the open,
		// not at the Ack; under ManualAck, before the application
		// answers), and the client, which needs only the server's
		// proof, may finish the proof first: the server keeps trying
		// until the client's marker ends it (cancel), up to serverSlack
		// times its DirectTimeout, so that it does not give up on a
		// connection the client has just taken.
		dc, err := side.punch(ctx, cm.Peer, cm.Secret, serverSlack*side.timeout)
		sp.punch <- punchResult{dc, err}
	}()
	c.path = &sessionPath{server: sp}
	c.local, c.remote = c.s.LocalAddr(), c.s.RemoteAddr()
	return c
}

// Kinds of wait for the path, by the deadline that bounds them.
const (
	waitNone = iota
	waitRead
	waitWrite
)

// wait starts the choice of the path of c, a session now accepted, and
// waits for it within the read or write deadline (kind).
func (sp *serverPath) wait(c *Conn, kind int) error {
	sp.start.Do(func() { go sp.run(c) })
	var expired <-chan struct{} // nil: no deadline bounds the wait
	switch kind {
	case waitRead:
		expired = sp.rdl.Wait()
	case waitWrite:
		expired = sp.wdl.Wait()
	}
	select {
	case <-sp.ready:
		return nil
	case <-expired:
		select {
		case <-sp.ready: // chosen as well: the call on the path says
			return nil
		default:
			return os.ErrDeadlineExceeded
		}
	}
}

// run reads the client's marker and moves c onto the path it names.
func (sp *serverPath) run(c *Conn) {
	p := c.path
	var b [1]byte
	_, err := io.ReadFull(sp.relay, b[:])
	var chosen net.Conn  // the direct connection, if the session goes there
	var moving *moveConn // the framed session, if the client runs one
	switch {
	case sp.closed.Load():
		sp.cancel()
		closeIf((<-sp.punch).c)
		p.failed, p.err = true, net.ErrClosed
	case err != nil:
		sp.cancel()
		closeIf((<-sp.punch).c)
		p.failed = true
		p.err = fmt.Errorf("rtcp: the session ended before its client chose a path (direct or relayed): %v", err)
	case b[0] == markerRelay:
		sp.cancel()
		r := <-sp.punch
		closeIf(r.c)
		p.err = r.err
		if p.err == nil {
			p.err = errors.New("rtcp: the client's punch did not come up in time")
		}
	case b[0] == markerFramed:
		m := newMoveConn(sp.relay, sp.cancel, func(direct bool, err error) {
			if sp.event != nil {
				sp.event(err)
			}
		})
		go func() {
			r := <-sp.punch
			m.setPunch(r.c, r.err)
		}()
		moving = m
	case b[0] == markerDirect:
		r := <-sp.punch // ends by its deadline
		sp.cancel()
		if r.err != nil {
			p.failed = true
			p.err = fmt.Errorf("rtcp: the client reached this server directly, but this side's punch failed (the connection died during the proof): %w", r.err)
			break
		}
		chosen = r.c
		p.direct = true
	default:
		sp.cancel()
		closeIf((<-sp.punch).c)
		p.failed = true
		p.err = fmt.Errorf("rtcp: the session began with %q, not the marker of a direct path (%q, %q or %q): the client speaks another version of direct sessions; update the older side, or run without Direct", b[0], markerDirect, markerRelay, markerFramed)
	}
	if p.failed || p.direct {
		sp.closeRelay(nil) // on D, the client has closed its side already
	}
	sp.mu.Lock()
	if chosen != nil {
		c.s = &rawConn{Conn: chosen, local: c.local, remote: c.remote}
	}
	if moving != nil {
		c.s = moving
	}
	if !sp.rd.IsZero() {
		c.s.SetReadDeadline(sp.rd)
	}
	if !sp.wd.IsZero() {
		c.s.SetWriteDeadline(sp.wd)
	}
	sp.resolved = true
	close(sp.ready)
	sp.mu.Unlock()
	if sp.event != nil && moving == nil { // a moving session reports its move
		if p.direct {
			sp.event(nil)
		} else {
			sp.event(p.err)
		}
	}
}

// closeRelay closes the relay once (aborted with abort, if not nil) and
// returns what that Close returned, every time.
func (sp *serverPath) closeRelay(abort error) error {
	sp.relayOnce.Do(func() {
		if abort != nil {
			abortStream(sp.relay, abort)
			return
		}
		sp.relayErr = sp.relay.Close()
	})
	return sp.relayErr
}

// abandon ends the choice of a Conn being closed (or aborted, with abort:
// the client reads a cut, not an end): the punch stops, the relay ends (a
// marker read under way returns), and once the choice has run, c.s is
// final.
func (sp *serverPath) abandon(c *Conn, abort error) {
	sp.closed.Store(true)
	sp.cancel()
	sp.closeRelay(abort)
	sp.start.Do(func() { go sp.run(c) })
	<-sp.ready
}

// setDeadline sets a deadline of a session whose path may not be chosen
// yet: kept, for the calls that wait for the choice and for the path
// chosen.
func (sp *serverPath) setDeadline(c *Conn, read, write bool, t time.Time) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.resolved {
		return setDeadlines(c.s, read, write, t)
	}
	if read {
		sp.rd = t
		sp.rdl.Set(t)
	}
	if write {
		sp.wd = t
		sp.wdl.Set(t)
	}
	return nil
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
// through the DP. On a server's session that the DP brokered, it waits
// for the client's choice, which comes within the client's
// DirectTimeout, and accepts a session under ManualAck, as Read does.
func (c *Conn) Direct() bool {
	if c.path == nil || c.open() != nil {
		return false
	}
	if m, ok := c.s.(*moveConn); ok {
		return m.isDirect()
	}
	return c.path.direct
}

// DirectError says why a session that asked for a direct path runs on the
// relay: the DP did not broker it (nil then; see docs/direct.md), or the
// punch failed (an error wrapping the reason). It is nil for a direct
// session and one that never asked. Like Direct, it waits on a server's
// brokered session for the client's choice.
func (c *Conn) DirectError() error {
	if c.path == nil {
		return nil
	}
	if err := c.open(); err != nil {
		return err
	}
	if m, ok := c.s.(*moveConn); ok {
		return m.punchErr()
	}
	return c.path.err
}

// linkDirect is how a server link's brokered sessions punch
// (ListenConfig.Direct): from the link's address toward the DP (a TCP
// transport's control link's, for its data links too).
type linkDirect struct {
	side  *directSide
	event func(error)
}

// wrap returns c, a session a link of this server accepted, made to
// follow its client's choice of path if the DP brokered it (ext, the
// session's Connect, carries the client's address and the secret).
func (ld *linkDirect) wrap(c *Conn, ext any) *Conn {
	cm, _ := ext.(*plan5.Connect)
	if ld == nil || cm == nil || !brokersDirect(cm.Peer, cm.Secret) {
		return c
	}
	return startServerPath(c, ld.side, cm, ld.event)
}

// directEvent reports how a brokered session chose its path.
func (l *Listener) directEvent(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev.emit(Event{Kind: EventDirect, DP: l.dp, Transport: l.cfg.Transport, Links: len(l.links), Err: err})
}
