package rtcp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"rtcp/internal/backoff"
	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// ListenConfig configures an indirect server. The zero value is ready to
// use: one JSON link to the DP.
type ListenConfig struct {
	// Transport selects the links' transport; the zero value is the
	// seed's JSON protocol.
	Transport Transport

	// PoolSize is the number of links kept to the DP (to each DP, when
	// Listen is given several); the DP spreads new sessions over them.
	// Zero means 1.
	PoolSize int

	// Dial opens a TCP connection to the DP. Nil means a net.Dialer. Tests
	// inject in-memory pipes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Owner identifies this server to the DP, so that the DP tells the
	// server's own links (its pool, or a link coming back after a drop)
	// from a different server that wants the same name. Empty means a
	// random identity for each Listener. A server that proves a key
	// (Credential) is known to the DP by its key instead: every process
	// holding the key is the same owner.
	Owner string

	// TLSConfig, if set, runs TLS on every link to the DP (control links,
	// yamux sessions and data links alike) before anything else.
	// ServerName defaults to the DP's host. With an empty name, Listen
	// serves TLS itself and TLSConfig needs a certificate.
	TLSConfig *tls.Config

	// Credential is the key this server proves it holds to a DP whose
	// Policy asks for one, or that gives the name to that key. The secret
	// never crosses the wire. Nil: none.
	Credential *Credential

	// MinBackoff and MaxBackoff bound the wait before dialling again after
	// a link is lost (exponential, full jitter), and before each new
	// attempt of a Listen that waits for its DP. Defaults 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	// WaitForDP makes Listen dial the DP again, after a backoff, while it
	// cannot be reached (the TCP dial fails: refused, no route, no such
	// host, a timeout), until the name is registered or the context
	// ends, logging each failure: for a server that may start before its
	// network or its DP. A DP that answers and refuses, or that speaks
	// another protocol or TLS setting, still fails Listen at once. False:
	// Listen fails on the first error.
	WaitForDP bool

	// KeepAlive is the heartbeat period of each link: the server gives a
	// link up, and dials again, when nothing has come from the DP for
	// twice this long (a DP that died without closing, or a path that
	// drops everything), and it asks the DP to expect as much of it.
	// Default 15 s; at least 100 ms; negative turns keepalive off.
	KeepAlive time.Duration

	// Logger receives logs of links lost and regained. Nil is silent.
	Logger *slog.Logger

	// Spares is the number of spare data links of TransportTCP that the
	// server keeps at the DP for each of its links, already through their
	// handshake: a session that finds one idle costs one crossing each
	// way between server and DP, where a data link dialled for it costs
	// a dial and two. Each spare used is dialled again at once. Zero
	// means 2; negative means none. The DP holds at most 4 per link, and
	// a DP that does not know spares holds none.
	Spares int

	// WindowMemory bounds the bytes by which the flow-control windows of
	// the Listener's sessions may grow together (each starts at 256 KiB
	// and grows, up to 256 MiB and half of this, while the round trip to
	// the DP rather than its reader holds the DP back). Default
	// DefaultWindowMemory (512 MiB).
	WindowMemory int64

	// ManualAck makes Accept return each session before the server has
	// answered its client, so that the application can refuse it with a
	// reason: the client waits until the application accepts the session
	// with Conn.Ack(nil), or with its first Read, Write, CloseWrite,
	// WriteTo or Unwrap, or refuses it with Conn.Ack(err), Abort or Close,
	// and a refused client's Dial fails with the reason (a plain Plan5
	// client reads Ack X=-1 and the reason). rtcp expose answers once it
	// has connected to its service. On the JSON transport the answers go
	// to the DP in the order the sessions came (the wire matches them by
	// order), so a session waits for the answers to those before it; one
	// left unanswered for 10 s is refused. Accepting costs no round trip
	// to the DP more than without ManualAck.
	ManualAck bool

	// OnEvent, if set, is told of each change in the Listener's links
	// and in its name's registration: a link up or down, the name
	// registered or lost to another server, an attempt to reach the DP
	// that failed (see EventKind). It is called from one goroutine of
	// the Listener's own, one event at a time, in the order they
	// happened; the links never wait for it (the events queue meanwhile),
	// but it should return soon, and it must not call the Listener's
	// Close, which waits for it to return: start a goroutine for that.
	// Events begin with Listen's attempts (the first link's EventLinkUp
	// and EventRegistered may come after Listen has returned) and end
	// with Close; a Listen that fails returns once OnEvent has returned
	// for its events.
	OnEvent func(Event)

	// Direct makes the server take part in direct sessions: when a client
	// that asked for one (Dialer.Direct) dials it, the DP tells both each
	// other's address, the session starts on the relay, both try to reach
	// each other for DirectTimeout, and the session moves to the direct
	// connection if they can, else stays on the relay, with no error
	// either way (Conn.Direct says which; an EventDirect reports each). The links to the DP are then dialled with
	// SO_REUSEPORT (with Dial set, the connection Dial makes must be bound
	// so, or no punch succeeds), and the DP learns the links' public
	// addresses. A direct connection is not encrypted: with TLSConfig set,
	// Direct is ignored. See docs/direct.md.
	Direct bool

	// DirectTimeout bounds how long this side tries to reach a client
	// directly, from the open (where the DP is near, under 1 ms away,
	// from the session's first Write, at most 2 ms later:
	// docs/direct.md, "Near the DP"); default DefaultDirectTimeout (1 s). Keep it at least the
	// client's: a session whose client moved waits for this side's punch
	// to end before it reads on. A direct
	// connection that goes silent fails after about twice KeepAlive (TCP
	// keepalive and TCP_USER_TIMEOUT), so that a path that drops is an
	// error, never a clean end.
	DirectTimeout time.Duration

	netns nsFunc // where sockets are made (tests: a network namespace); nil: here
}

// direct reports whether the Listener takes part in direct sessions.
func (lc *ListenConfig) direct() bool { return lc.Direct && lc.TLSConfig == nil }

// Listen announces an indirect server named name at the DP addr, or, with
// an empty name, listens on the TCP address addr (a direct server). A
// name that is not a ValidName fails at once with an error matching
// ErrBadName, before any connection is made. The
// context bounds the first connection to the DP only (with WaitForDP,
// every attempt until the name is registered).
//
// The returned listener outlives its links: when a link or the DP goes
// away it dials again, and Accept keeps blocking meanwhile.
//
// addr may list several DPs of a cluster, separated by commas
// ("dp1:9000,dp2:9000"): the listener keeps its links on each of them
// under one Owner, and Accept returns the sessions of all. Listen returns
// once one DP has taken the name (the others are dialled again in the
// background, as after a lost link), or fails with ErrNameTaken if any DP
// refuses the name to another owner. A DP lost takes only its own
// sessions with it; new sessions go through the others.
func (lc *ListenConfig) Listen(ctx context.Context, addr, name string) (net.Listener, error) {
	if name == "" {
		return lc.listen(ctx, addr, name, nil)
	}
	ev := newEventQueue(lc.OnEvent)
	l, err := lc.listenEvents(ctx, addr, name, ev)
	if err != nil {
		ev.close()
	}
	return l, err
}

// listenEvents is Listen for an indirect server, with ev for its events.
func (lc *ListenConfig) listenEvents(ctx context.Context, addr, name string, ev *eventQueue) (net.Listener, error) {
	if !lc.WaitForDP {
		return lc.listen(ctx, addr, name, ev)
	}
	minWait, maxWait := lc.backoff()
	for failures := 1; ; failures++ {
		actx, cancel := context.WithTimeout(ctx, defaultHandshakeTimeout) // a DP that drops SYNs
		l, err := lc.listen(actx, addr, name, ev)
		cancel()
		switch {
		case err == nil:
			if failures > 1 {
				lc.log().Info("rtcp: link to DP up", "name", name, "dp", addr)
			}
			return l, nil
		case ctx.Err() != nil:
			return nil, &net.OpError{Op: "listen", Net: "rtcp", Addr: &Addr{Name: name, Addr: addr}, Err: ctx.Err()}
		case !unreachable(err):
			return nil, err
		}
		wait := backoff.Delay(failures, minWait, maxWait)
		lc.log().Warn("rtcp: cannot reach DP; retrying", "name", name, "dp", addr, "err", err, "retry_in", wait)
		ev.emit(Event{Kind: EventReconnecting, DP: addr, Transport: lc.Transport, Err: err, Attempt: failures, Backoff: wait})
		if backoff.Sleep(ctx, wait) != nil {
			return nil, &net.OpError{Op: "listen", Net: "rtcp", Addr: &Addr{Name: name, Addr: addr}, Err: ctx.Err()}
		}
	}
}

// unreachable reports whether err, from an attempt to listen, is the
// failure to open a connection to the DP at all, which waiting may cure:
// of every DP, for a cluster.
func unreachable(err error) bool {
	switch e := err.(type) {
	case *net.OpError:
		if e.Op == "dial" && e.Net != "rtcp" {
			return true
		}
	case *net.DNSError:
		return true
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, e := range errs {
			if !unreachable(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	if u := errors.Unwrap(err); u != nil {
		return unreachable(u)
	}
	return false
}

// backoff returns MinBackoff and MaxBackoff, or their defaults.
func (lc *ListenConfig) backoff() (minWait, maxWait time.Duration) {
	minWait, maxWait = lc.MinBackoff, lc.MaxBackoff
	if minWait <= 0 {
		minWait = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 30 * time.Second
	}
	return minWait, maxWait
}

func (lc *ListenConfig) log() *slog.Logger {
	if lc.Logger == nil {
		return discardLogger
	}
	return lc.Logger
}

// listen is Listen without WaitForDP; ev takes the events.
func (lc *ListenConfig) listen(ctx context.Context, addr, name string, ev *eventQueue) (net.Listener, error) {
	if name == "" {
		var nlc net.ListenConfig
		nl, err := nlc.Listen(ctx, "tcp", addr)
		if err != nil || lc.TLSConfig == nil {
			return nl, err
		}
		return tls.NewListener(nl, lc.TLSConfig), nil
	}
	if err := ValidName(name); err != nil { // before any dial, and not worth waiting for
		return nil, &net.OpError{Op: "listen", Net: "rtcp", Addr: &Addr{Name: name, Addr: addr}, Err: err}
	}
	l := &Listener{
		cfg:    *lc,
		dp:     addr,
		addr:   &Addr{Name: name, Addr: addr},
		accept: make(chan *Conn),
		closed: make(chan struct{}),
		ev:     ev,
	}
	if l.cfg.PoolSize <= 0 {
		l.cfg.PoolSize = 1
	}
	if l.cfg.Spares == 0 {
		l.cfg.Spares = defaultSpares
	}
	l.cfg.MinBackoff, l.cfg.MaxBackoff = lc.backoff()
	l.cfg.Dial = dpDialer(lc.Dial, lc.direct(), lc.netns)
	if l.cfg.Owner == "" {
		var b [16]byte
		rand.Read(b[:])
		l.cfg.Owner = hex.EncodeToString(b[:])
	}
	l.flow = newFlowConfig(l.cfg.WindowMemory, 0)
	if lc.Transport != TransportJSON && lc.Transport != TransportYamux && lc.Transport != TransportTCP {
		return nil, l.opErr("listen", fmt.Errorf("%w: transport %v", ErrNotImplemented, lc.Transport))
	}
	if dps := splitDPs(addr); len(dps) > 1 {
		return l.listenCluster(ctx, dps)
	}
	first, err := l.connect(ctx)
	if err != nil {
		return nil, l.opErr("listen", err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(l.cfg.PoolSize)
	go l.keep(first)
	for i := 1; i < l.cfg.PoolSize; i++ {
		go l.keep(nil)
	}
	return l, nil
}

// Listener is an indirect server: it keeps links to a discover point under
// its name and hands out the sessions clients open through them.
type Listener struct {
	cfg    ListenConfig
	dp     string
	addr   *Addr
	accept chan *Conn
	closed chan struct{}
	ctx    context.Context // ends when the listener is closed
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup

	flow flowConfig  // shared with the members of a cluster Listener
	ev   *eventQueue // ListenConfig.OnEvent's; shared with the members

	mu    sync.Mutex // guards links and lost, and orders the events of links
	links map[serverLink]struct{}
	lost  bool // the DP refused the name to another server; no link since

	members []*Listener // one per DP when listening on several (cluster.go)
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next session a client opens to this server.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, l.opErr("accept", net.ErrClosed)
	}
}

// Close stops accepting: the DP refuses new sessions, and Accept returns
// net.ErrClosed. Sessions already accepted go on until they are closed,
// the way a TCP listener leaves its accepted connections alone; a link
// ends when its last session does.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.cancel()
	})
	l.wg.Wait()
	for _, m := range l.members {
		m.wg.Wait()
	}
	l.ev.close()
	return nil
}

// Addr returns "name@dp-address".
func (l *Listener) Addr() net.Addr { return l.addr }

// NumLinks returns the number of links to the DP that are up now.
func (l *Listener) NumLinks() int {
	n := 0
	for _, m := range l.members {
		n += m.NumLinks()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return n + len(l.links)
}

func (l *Listener) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "rtcp", Addr: l.addr, Err: err}
}

func (l *Listener) log() *slog.Logger {
	if l.cfg.Logger == nil {
		return discardLogger
	}
	return l.cfg.Logger
}

var discardLogger = slog.New(slog.DiscardHandler)

// keep keeps one link up until the listener is closed.
func (l *Listener) keep(s serverLink) {
	defer l.wg.Done()
	failures := 0
	for {
		if s == nil {
			ctx, cancel := context.WithTimeout(l.ctx, defaultHandshakeTimeout)
			var err error
			s, err = l.connect(ctx)
			cancel()
			if err != nil {
				if l.ctx.Err() != nil {
					return // closed
				}
				failures++
				wait := backoff.Delay(failures, l.cfg.MinBackoff, l.cfg.MaxBackoff)
				msg := "rtcp: cannot reach DP; retrying"
				if errors.Is(err, ErrNameTaken) {
					l.nameLost(err)
					msg = "rtcp: name still held by another server; retrying"
				}
				l.log().Warn(msg, "name", l.addr.Name, "dp", l.dp, "err", err, "retry_in", wait)
				l.ev.emit(Event{Kind: EventReconnecting, DP: l.dp, Transport: l.cfg.Transport, Err: err, Attempt: failures, Backoff: wait})
				if backoff.Sleep(l.ctx, wait) != nil {
					return // closed
				}
				continue
			}
			l.log().Info("rtcp: link to DP up", "name", l.addr.Name, "dp", l.dp)
		}
		failures = 0
		if !l.serve(s) {
			return
		}
		l.log().Warn("rtcp: link to DP lost", "name", l.addr.Name, "dp", l.dp, "err", s.err())
		s = nil
	}
}

// serve hands out s's sessions until s ends (true: dial again) or the
// listener is closed (false).
func (l *Listener) serve(s serverLink) bool {
	l.linkUp(s)
	if m, ok := s.(*muxServerLink); ok && m.spares != nil {
		m.spares.start(l)
	}
	for {
		c, err := s.accept(l.ctx)
		if err != nil {
			select {
			case <-l.closed:
				l.linkDown(s, false)
				s.drain()
				return false
			default:
			}
			l.linkDown(s, true)
			return true
		}
		select {
		case l.accept <- c:
		case <-l.closed:
			c.Close()
			l.linkDown(s, false)
			s.drain()
			return false
		}
	}
}

// linkUp adds s to the links that are up, and reports it.
func (l *Listener) linkUp(s serverLink) {
	l.mu.Lock()
	if l.links == nil {
		l.links = make(map[serverLink]struct{})
	}
	l.links[s] = struct{}{}
	n := len(l.links)
	l.ev.emit(Event{Kind: EventLinkUp, DP: l.dp, Transport: l.cfg.Transport, Links: n})
	back := false
	if n == 1 {
		back, l.lost = l.lost, false
		l.ev.emit(Event{Kind: EventRegistered, DP: l.dp, Transport: l.cfg.Transport, Links: n})
	}
	l.mu.Unlock()
	if back {
		l.log().Warn("rtcp: name taken back; this server is reachable under it again", "name", l.addr.Name, "dp", l.dp)
	}
}

// linkDown takes s out of the links that are up, and reports it if
// report (the listener is not closing).
func (l *Listener) linkDown(s serverLink, report bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.links, s)
	if report {
		l.ev.emit(Event{Kind: EventLinkDown, DP: l.dp, Transport: l.cfg.Transport, Links: len(l.links), Err: s.err()})
	}
}

// nameLost reports, once, that the DP refused the name to one of this
// server's links because another server holds it now: clients reach that
// server, and this one is reachable under its name no more.
func (l *Listener) nameLost(err error) {
	l.mu.Lock()
	changed := !l.lost && len(l.links) == 0
	if changed {
		l.lost = true
		l.ev.emit(Event{Kind: EventNameLost, DP: l.dp, Transport: l.cfg.Transport, Err: err})
	}
	l.mu.Unlock()
	if !changed {
		return
	}
	l.log().Error("rtcp: name lost: the DP gave it to another server; this server is no longer reachable under it, and keeps dialling to take it back",
		"name", l.addr.Name, "dp", l.dp, "err", err)
}

// serverLink is one link of an indirect server to its DP.
type serverLink interface {
	// accept returns the next session, or an error when the link has
	// ended or ctx is done.
	accept(ctx context.Context) (*Conn, error)
	// drain refuses new sessions and ends the link when its last
	// session ends.
	drain()
	// err says why the link ended.
	err() error
}

// connect dials the DP and registers the name: one link.
func (l *Listener) connect(ctx context.Context) (serverLink, error) {
	c, err := dialDP(ctx, l.cfg.Dial, l.cfg.TLSConfig, l.dp)
	if err != nil {
		return nil, err
	}
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{R: plan5.RoleIS, N: l.addr.Name, Owner: l.cfg.Owner}
	plan5link.Offer(ours, plan5.DefaultMaxLine)
	keepAlive := keepAlivePeriod(l.cfg.KeepAlive)
	ours.HeartBeat = plan5link.HeartBeatMS(keepAlive)
	var direct *linkDirect
	if l.cfg.direct() {
		if side := newDirectSide(c, l.cfg.DirectTimeout, l.cfg.KeepAlive, l.cfg.netns); side != nil {
			ours.Direct = true
			direct = &linkDirect{side: side, event: l.directEvent}
		}
	}
	switch l.cfg.Transport {
	case TransportYamux:
		ours.Transport = wireYamux
	case TransportTCP:
		ours.Transport = wireTCP
		ours.Spares = max(l.cfg.Spares, 0)
	}
	ir := mux.NewIdleReader(c)
	r := plan5.NewReader(ir, plan5.DefaultMaxLine)
	began := time.Now()
	theirs, err := exchangeAloha(c, r, ours, l.dp, l.cfg.Credential, nil, nil)
	handshake := time.Since(began) // a round trip or two: the DP times none of its own toward us
	if err == nil && ours.Transport != theirs.Transport {
		err = fmt.Errorf("%w %s (it answered %q); use TransportJSON", ErrTransportNotOffered, l.cfg.Transport, theirs.Transport)
	}
	stopErr := stop()
	if err == nil {
		err = stopErr
	}
	if err != nil {
		c.Close()
		var re *RefusedError
		if errors.As(err, &re) && re.Reason == errNameTakenReason(l.addr.Name) {
			return nil, fmt.Errorf("%w: %v", ErrNameTaken, err)
		}
		if errors.As(err, &re) && strings.HasPrefix(re.Reason, errTransportReason(ours.Transport)) {
			return nil, fmt.Errorf("%w %s: %v", ErrTransportNotOffered, l.cfg.Transport, err)
		}
		return nil, ctxErr(ctx, err)
	}
	local := l.addr
	dpAddr := l.dp
	remote := func(name, addr string) net.Addr {
		if addr == "" {
			addr = dpAddr
		}
		return &Addr{Name: name, Addr: addr}
	}
	if l.cfg.Transport == TransportYamux {
		c.SetDeadline(time.Time{})
		s := newYamuxSession(c, r, ir, false, "link to DP "+l.dp, l.flow, l.log())
		s.ObserveRTT(handshake)
		if direct != nil {
			direct.rtt = s.RTT
		}
		startYamuxKeepAlive(ir, s, keepAlive)
		return &yamuxServerLink{muxServerLink: muxServerLink{s: s, direct: direct}, local: local, remote: remote, manual: l.cfg.ManualAck, beats: keepAlive > 0}, nil
	}
	cfg := plan5link.Config(ours, theirs)
	cfg.Name = "link to DP " + l.dp
	l.flow.apply(&cfg, l.log())
	cfg.StreamAddrs = func(name, addr string, _ bool) (net.Addr, net.Addr) {
		return local, remote(name, addr)
	}
	cfg.ManualAck = l.cfg.ManualAck // the application answers (Conn.Ack)
	link := &muxServerLink{manual: l.cfg.ManualAck, direct: direct}
	if l.cfg.Transport == TransportTCP {
		// Each open is acknowledged before its data link is dialled.
		cfg.ManualAck = true
		link.data = l.acceptData
		link.dialled = make(chan *Conn)
	}
	r.Grow(plan5link.LinkReadBuffer)
	fr := plan5link.NewFramer(r, c)
	fr.SetHeartbeat(ours)
	fr.SetLegacy(plan5.Legacy(theirs.V))
	link.s = mux.New(c, fr, cfg)
	if l.cfg.Transport == TransportTCP {
		link.spares = newSparePool(ours.Spares, theirs, link.s.Done())
		if link.spares != nil {
			link.spares.direct = direct
		}
	}
	link.s.ObserveRTT(handshake)
	if direct != nil {
		direct.rtt = link.s.RTT
	}
	startKeepAlive(ir, link.s, ours, theirs)
	return link, nil
}

// muxServerLink is a server link of the JSON transport, or the control
// link of the TCP transport (data is set).
type muxServerLink struct {
	s      *mux.Session
	data   func(*mux.Stream) (*Conn, error) // completes a TCP-transport open
	spares *sparePool                       // TCP transport: its spare data links, or nil

	manual bool        // ListenConfig.ManualAck: the application answers each open
	order  ackOrder    // the answers on the link itself go in the order of the opens
	direct *linkDirect // ListenConfig.Direct: how its brokered sessions punch; else nil

	// A TCP-transport open dials its data link off the accept loop, so
	// that a slow dial holds up only its own session; dialled carries
	// the sessions whose data link is up, and dials the dials running.
	dialled chan *Conn
	dials   sync.WaitGroup
}

func (m *muxServerLink) accept(ctx context.Context) (*Conn, error) {
	for {
		select {
		case st := <-m.s.Streams():
			if m.data == nil || st.Token() == "" {
				// A JSON link, or a plain Connect on a TCP control link:
				// the session runs on the link itself.
				return m.direct.wrap(m.conn(st), st.Ext()), nil
			}
			// Acks answer Connects in order (they carry no token), so
			// this one goes now, and the dial after it.
			if st.Ack(nil) != nil {
				continue
			}
			m.dials.Go(func() { m.dial(ctx, st) })
		case c := <-m.dialled:
			return c, nil
		case <-m.s.Done():
			m.spares.stop()
			m.dials.Wait()
			return nil, m.s.Err()
		case <-ctx.Done():
			return nil, net.ErrClosed
		}
	}
}

// dial completes the open st with its data link and hands the session
// to accept; a failure fails only this session.
func (m *muxServerLink) dial(ctx context.Context, st *mux.Stream) {
	c, err := m.data(st)
	if err != nil {
		return
	}
	c = m.direct.wrap(c, st.Ext())
	select {
	case m.dialled <- c:
	case <-m.s.Done():
		c.Close()
	case <-ctx.Done():
		c.Close()
	}
}

// drain ends the link with its last session; with none, at once, and
// then it waits for the link's goroutines, so that Close leaves nothing
// running that has no session to serve.
func (m *muxServerLink) drain() {
	m.spares.stop()
	m.s.Drain()
	select {
	case <-m.s.Done():
		m.s.Close()
	default:
	}
	m.dials.Wait() // the listener's ctx has ended them
}

func (m *muxServerLink) err() error { return m.s.Err() }

// conn hands out st, a session that runs on the link itself: on a JSON
// link answered by the application under ManualAck, in turn, or else
// already (by the session layer); on a TCP control link (a plain Connect,
// from a DP that sends no token) now, since the Acks of its other opens
// go at once.
func (m *muxServerLink) conn(st *mux.Stream) *Conn {
	if !m.manual || m.data != nil {
		if m.data != nil {
			st.Ack(nil)
		}
		return newConn(st, nil)
	}
	turn, done := m.order.next()
	return newPendingConn(st, func(refusal error) error {
		defer done()
		select {
		case <-turn:
		case <-m.s.Done():
			return m.s.Err()
		}
		return st.Ack(refusal)
	})
}

// ackOrder puts the answers to the opens of one link in the order the
// opens came: an Ack names no Connect, so the DP takes each for the oldest
// Connect it has not had an answer to, and an answer out of order would
// give one client another's session.
type ackOrder struct {
	last chan struct{} // closed once the latest open so far is answered
}

// next returns, for the next open, a channel closed when every open
// before it is answered, and done, to call once its own answer is queued.
// Only the link's accept loop calls it.
func (o *ackOrder) next() (turn <-chan struct{}, done func()) {
	if o.last == nil {
		o.last = make(chan struct{})
		close(o.last)
	}
	turn, mine := o.last, make(chan struct{})
	o.last = mine
	return turn, func() { close(mine) }
}

// errNameTakenReason is the DP's refusal text for a taken name; Listen
// turns it back into ErrNameTaken.
func errNameTakenReason(name string) string {
	return fmt.Sprintf("name %q is already served by another server; choose another name, or stop the other server", name)
}
