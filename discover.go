package rtcp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/internal/relay"
	"rtcp/internal/serve"
	"rtcp/internal/tcpreset"
	"rtcp/protocol/plan5"
)

// A DiscoverPoint (DP) is the public relay: indirect servers keep links to
// it under a name, and it carries each session an indirect client opens to
// that name over one of the server's links. The zero value is ready to use:
// an in-memory registry and default limits.
//
// A DiscoverPoint is a switchboard: doors (the Plan5 client handshake, and
// the others rtcp speaks) produce a connection and a name, the registry
// gives the name's links, a link opens a session, and one relay joins the
// two.
type DiscoverPoint struct {
	// Registry records who owns each name. Nil means a MemoryRegistry.
	Registry Registry

	// Name is what the DP calls itself in its Aloha. Default "rtcp".
	Name string

	// HandshakeTimeout bounds the Aloha exchange and a client's Connect.
	// Default 10 s.
	HandshakeTimeout time.Duration

	// MaxLine is the longest JSON line accepted from a peer. Default
	// plan5.DefaultMaxLine (64 KiB).
	MaxLine int

	// KeepAlive is the heartbeat period the DP asks of every link's peer
	// (servers, and clients of the JSON transport): a link that delivers
	// nothing for twice this long is dropped as dead, and its sessions end
	// with an error. Peers that announce no heartbeat of their own (plain
	// Plan5 peers) are not held to it. Default 15 s; at least 100 ms;
	// negative turns keepalive off.
	KeepAlive time.Duration

	// Bounds (limits.go). Zero means the default; reaching one refuses
	// only the peer that asked, with a reason that names the bound.
	//
	// MaxSessionsPerServer bounds the sessions relayed to one name at
	// once (default 10000). MaxPendingConnects bounds the sessions being
	// opened to one name that its server has not answered yet (default
	// 1024). MaxNames bounds the names registered here (default 100000).
	// MaxLinksPerOwner bounds the links of one server, over all its names
	// (default 64).
	MaxSessionsPerServer int
	MaxPendingConnects   int
	MaxNames             int
	MaxLinksPerOwner     int

	// MaxNameStats bounds the names whose sessions, bytes and refusals
	// Status (and rtcp/dpmetrics) counts on their own (default 1000;
	// negative: none); the others are summed as one, Status.Other.
	MaxNameStats int

	// Bounds per source address (an IPv4 address, or an IPv6 /64), on
	// connections not yet admitted; zero means the default, negative no
	// bound. MaxHandshakesPerSource bounds its connections still in their
	// handshake (TLS, Aloha, the key's proof), each of which holds
	// buffers until HandshakeTimeout (default 64).
	// MaxAuthFailuresPerSource bounds its failed authentications (a wrong
	// key or proof, no key where one is needed) a minute (default 30).
	// Over either, its new connections are refused at once. Loopback
	// addresses are not bounded: this host's programs, or a proxy in
	// front of the DP whose clients all share its address.
	MaxHandshakesPerSource   int
	MaxAuthFailuresPerSource int

	// Logger receives the DP's logs. Nil is silent.
	Logger *slog.Logger

	// WindowMemory bounds the bytes by which the flow-control windows of
	// all the DP's sessions may grow together (each starts at 256 KiB and
	// grows, up to 256 MiB and half of this, while the round trip rather than its reader
	// holds its peer back): what readers that fall behind can make the DP
	// hold. When it is spent, windows stop growing. Default
	// DefaultWindowMemory (512 MiB).
	WindowMemory int64

	// StallTimeout bounds how long one session of a peer that does no
	// flow control (a plain Plan5 server, say) may hold up the others on
	// its link: when its client reads nothing, the DP stops reading the
	// link (TCP holds the peer back), and after this long without
	// progress it cuts the session, logging why. Default 10 s; negative
	// never cuts.
	StallTimeout time.Duration

	// Ports maps TCP listen addresses to server names: ListenAndServe
	// also accepts plain TCP on each address and carries every
	// connection to that server (port mode, see ServePort).
	Ports map[string]string

	// TLSConfig, if set, makes Serve and ListenAndServe speak TLS: each
	// connection's TLS handshake runs first, under HandshakeTimeout, and
	// the Plan5 protocol inside it. It needs a certificate (Certificates
	// or GetCertificate); set ClientAuth to also ask peers for theirs.
	// Port mode (ServePort, Ports) stays plain TCP for plain clients.
	TLSConfig *tls.Config

	// Policy, if set, says which peers the DP admits (by key), who may
	// register which names and which clients may reach them; see Policy.
	// Nil admits everyone. Change it while the DP runs with SetPolicy.
	Policy *Policy

	// Advertise is this DP's address as the other DPs of its cluster
	// reach it (host:port). With a Registry shared by several DPs
	// (rtcp/etcdregistry), the DP registers its names under it, and a
	// client that asks this DP for a name held only at another DP is
	// carried there. Empty: a DP on its own, which never forwards.
	Advertise string

	// ProxyProtocolFrom are the networks of load balancers in front of
	// the DP that send a PROXY protocol header (version 1 or 2) with each
	// connection: on a connection from one of them, every door the DP
	// serves (Serve, ServePort, ServeSNI; an HTTPDoor through
	// ProxyProtocolListener) reads the header first, within
	// HandshakeTimeout, and the client it names is the connection's
	// address for the Policy, the bounds per source and the logs. A
	// connection from these networks without a valid header is refused
	// (a header that names no client, a balancer's health check, keeps
	// the connection's own address). Connections from elsewhere are read
	// as they are: a header from them is not honoured. Empty: none.
	ProxyProtocolFrom []netip.Prefix

	// NoDirect makes the DP refuse to broker direct sessions
	// (Dialer.Direct, ListenConfig.Direct): every session stays on its
	// relay, as for peers that do not ask. By default the DP brokers a
	// session when both its client and its server asked and the Policy
	// allows the session: it tells each the other's address as it sees
	// it, and carries the session only if they cannot reach each other
	// (docs/direct.md).
	NoDirect bool

	// Peer is the template of the Dialer this DP uses to carry a session
	// to another DP of its cluster: set its Dial, and the TLS and key the
	// other DPs ask of clients. Nil means a zero Dialer. Its Name and
	// Transport are not used: each session gives its client's name and
	// the raw leg.
	Peer *Dialer
	peer Dialer // the Dialer of the hops to other DPs when Peer is nil

	links    linkTable
	initOnce sync.Once
	flow     flowConfig // every session's window budget, stall timeout, logger
	auth     authState
	limits   rateLimits           // the buckets of the Policy's Limits (limits_rate.go)
	mu       sync.Mutex           // guards tcpLinks, sessions, the maps of counts, idle and shutdown
	g        serve.Group          // listeners, connections, their goroutines
	tcpLinks map[string]*dataLink // the tcp transport's control links, by token: their data links find them here
	sessions int                  // client sessions being relayed
	counts   dpCounts             // for limits and Stats (stats.go)
	idle     chan struct{}        // closed when sessions drops to 0 during Shutdown
	shutdown bool
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc

	// loop relays the sessions whose two sides are TCP connections (the
	// tcp transport's, port mode's), their small messages on one
	// goroutine for all (relay.Loop); Close cuts what it holds.
	loop relay.Loop

	// brokeredEnded, if set (by tests, before the DP serves), is called
	// once a brokered session's relay has ended and been counted: moved
	// says whether both its directions moved.
	brokeredEnded func(moved bool)
}

// A Link carries sessions to one server: the DP opens a session over it for
// each client of the server's name. Plan5 links (JSON or yamux) are Links,
// and so are the links of the other wires rtcp speaks (a Mihini device, a
// tcpipe partner, a CCCP device, a Cumulocity device WebSocket), which
// their packages register with AddLink.
type Link interface {
	// Open opens a session to the server for the client called name at
	// the network address addr (either may be empty). The error of a
	// refusal should say why.
	Open(ctx context.Context, name, addr string) (net.Conn, error)
	// Done is closed when the link has ended.
	Done() <-chan struct{}
}

// muxLink is a Link of the JSON transport.
type muxLink struct{ s *mux.Session }

func (l muxLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	return l.s.OpenExt(ctx, name, addr, "", directOf(ctx).ext())
}
func (l muxLink) Done() <-chan struct{} { return l.s.Done() }
func (l muxLink) Close() error          { return l.s.Close() }

// AddLink registers l as a Link of the server name, owned by owner, as if
// that server had dialled in: clients of name reach it, round robin with
// the server's other links. It fails with ErrNameTaken if another owner
// holds name, and with one matching ErrBadName if name is not a
// ValidDoorName. Call remove when the link ends (or to withdraw it); a
// name whose last link is removed is free again.
//
// The DP's Policy does not apply to such a link: it is the program's own.
// A door that takes servers from the network uses AddLinkAs.
func (dp *DiscoverPoint) AddLink(name, owner string, l Link) (remove func(), err error) {
	dp.init()
	if err := dp.checkLinkName(name); err != nil {
		return nil, err
	}
	return dp.addLinkOf(name, owner, l, nil)
}

// AddLinkAs is AddLink for a link whose server proved it holds the
// Policy's key (or "" for an anonymous server): a door that takes
// servers from the network by another protocol (a CCCP device, a Mihini
// LISTEN, a Cumulocity key) registers its links with it, so that the
// owner rules apply to its names as to a server that dials in. The
// Policy must allow key to hold name (else an error matching
// ErrUnauthorized), and is asked again at each session: a link it no
// longer allows is withdrawn from the DP's table, as if remove had been
// called (the door is not told; its connection stays up until it ends).
// Links of one key share an owner: a key's new link joins the rotation
// of its other links of the name, another key's link is refused, and a
// link of the key the Policy gives the name to takes it from one the
// Policy no longer allows. Door links do not count toward
// MaxLinksPerOwner (a door has bounds of its own).
func (dp *DiscoverPoint) AddLinkAs(key, name, owner string, l Link) (remove func(), err error) {
	dp.init()
	if err := dp.checkLinkName(name); err != nil {
		return nil, err
	}
	who := principal{key: key}
	if err := dp.policy().authorizeServer(who, name); err != nil {
		dp.refusedName(refusedUnauthorized, name)
		return nil, err
	}
	return dp.addLinkOf(name, registryOwner(who, owner), l, &who)
}

// addLinkOf adds a Link of the program's, or of the principal who.
func (dp *DiscoverPoint) addLinkOf(name, owner string, l Link, who *principal) (remove func(), err error) {
	dp.init()
	if dp.closing() {
		return nil, ErrDiscoverPointClosed
	}
	reg := Registration{Name: name, Owner: owner, DP: dp.Advertise}
	unlock := dp.links.lockName(name)
	defer unlock()
	if err := dp.links.check(reg, dp.linkLimits(), who != nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(dp.ctx, dp.HandshakeTimeout)
	err = dp.Registry.Register(ctx, reg)
	if errors.Is(err, ErrNameTaken) && who != nil && dp.evictSquatter(name) {
		err = dp.Registry.Register(ctx, reg) // the Policy gave the name to who
	}
	cancel()
	if err != nil {
		return nil, err
	}
	var once sync.Once
	remove = func() { once.Do(func() { dp.removeLink(reg, l) }) }
	e := &linkEntry{link: l, reg: reg}
	if who != nil {
		e.who, e.policed, e.door = *who, true, true
		// Withdrawing takes the name's lock, which the caller may hold
		// (evictSquatter): a goroutine of the DP's does it.
		e.end = func() error {
			if !dp.g.Go(remove) {
				// The DP is closing: no name lock, but the registry,
				// which may outlive the DP, must forget the name.
				if dp.links.remove(reg, l) {
					dp.unregister(reg)
				}
			}
			return nil
		}
	}
	if err := dp.addLink(e); err != nil {
		return nil, err
	}
	if who != nil {
		// A SetPolicy since the check above swept the table without
		// this link: judge it again by the policy in force now.
		if err := dp.policy().authorizeServer(*who, name); err != nil {
			if dp.links.remove(reg, l) {
				dp.unregister(reg)
			}
			dp.refusedName(refusedUnauthorized, name)
			return nil, err
		}
	}
	return remove, nil
}

// Relay carries the byte stream c to a new session of the server name and
// copies both ways until the session ends, then closes c: the door for
// clients that arrive by other protocols (port mode, a CCCP client port, a
// Cumulocity client). client names the client to the server. It returns
// at once, closing c, if name has no server or refuses, or is not a
// ValidDoorName (an error matching ErrBadName).
func (dp *DiscoverPoint) Relay(c net.Conn, name, client string) error {
	dp.init()
	defer c.Close()
	if err := ValidDoorName(name); err != nil {
		dp.refuseBadName(err, c.RemoteAddr())
		return err
	}
	return dp.serveSession(sessionRequest{conn: c, name: name, client: client, addr: c.RemoteAddr()})
}

func (dp *DiscoverPoint) init() {
	dp.initOnce.Do(func() {
		if dp.Registry == nil {
			dp.Registry = new(MemoryRegistry)
		}
		if dp.Name == "" {
			dp.Name = "rtcp"
		}
		if dp.HandshakeTimeout <= 0 {
			dp.HandshakeTimeout = defaultHandshakeTimeout
		}
		if dp.MaxLine <= 0 {
			dp.MaxLine = plan5.DefaultMaxLine
		}
		dp.initLimits()
		dp.flow = newFlowConfig(dp.WindowMemory, dp.StallTimeout)
		dp.links.init(&dp.counts.names)
		dp.ctx, dp.cancel = context.WithCancel(context.Background())
	})
}

func (dp *DiscoverPoint) log() *slog.Logger {
	if dp.Logger == nil {
		return discardLogger
	}
	return dp.Logger
}

// ListenAndServe listens on the TCP address addr and calls Serve. It also
// listens on each address of Ports and serves it as ServePort does, until
// the DP is closed; if any address cannot be listened on, or a name of
// Ports is not a ValidDoorName, it returns that error and serves none.
func (dp *DiscoverPoint) ListenAndServe(addr string) error {
	dp.init()
	if dp.closing() {
		return ErrDiscoverPointClosed
	}
	for _, name := range dp.Ports {
		if err := ValidDoorName(name); err != nil {
			return fmt.Errorf("rtcp: Ports: %w", err)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ports := make(map[net.Listener]string, len(dp.Ports))
	for paddr, name := range dp.Ports {
		pl, err := net.Listen("tcp", paddr)
		if err != nil {
			l.Close()
			for pl := range ports {
				pl.Close()
			}
			return fmt.Errorf("rtcp: port mode for server %q: %w", name, err)
		}
		ports[pl] = name
	}
	for pl, name := range ports {
		dp.goServePort(pl, name)
	}
	return dp.Serve(l)
}

// goServePort runs ServePort(l, name) in a goroutine that Close waits for.
func (dp *DiscoverPoint) goServePort(l net.Listener, name string) {
	if dp.closing() {
		l.Close()
		return
	}
	dp.log().Info("rtcp: port mode: carrying connections to a server", "addr", l.Addr(), "server", name)
	if !dp.g.Go(func() {
		err := dp.ServePort(l, name)
		if !errors.Is(err, ErrDiscoverPointClosed) {
			dp.log().Error("rtcp: port mode stopped", "addr", l.Addr(), "server", name, "err", err)
		}
	}) {
		l.Close()
	}
}

// Serve accepts connections on l and serves each until the DP is closed.
// It always returns a non-nil error; after Close or Shutdown,
// ErrDiscoverPointClosed. Serve closes l when it returns.
func (dp *DiscoverPoint) Serve(l net.Listener) error {
	return dp.serve(l, dp.serveTLS)
}

// ServeConn serves one connection that reached the DP some other way than
// through Serve's listener (a WebSocket, for one: see package wsconn)
// exactly as Serve serves the connections it accepts - with a TLSConfig,
// its TLS handshake and client certificate check first - and returns when
// it is done with it. It closes c, unless c became part of a session that
// closes it when it ends. Close and Shutdown end it like the others.
func (dp *DiscoverPoint) ServeConn(c net.Conn) {
	dp.init()
	dp.g.ServeConn(c, dp.serveTLS)
}

// serve runs an accept loop on l, handing each connection to handle in a
// goroutine of its own that the DP tracks.
func (dp *DiscoverPoint) serve(l net.Listener, handle func(net.Conn) (kept bool)) error {
	dp.init()
	if err := dp.checkPolicy(); err != nil {
		l.Close()
		return err
	}
	if err := dp.g.Serve(l, dp.proxiedHandler(handle)); err != serve.ErrClosed {
		return err
	}
	return ErrDiscoverPointClosed
}

// Close closes the DP's listeners and every link and session at once.
// Serve returns ErrDiscoverPointClosed. Close returns when every goroutine
// the DP started has ended.
func (dp *DiscoverPoint) Close() error {
	dp.init()
	dp.mu.Lock()
	dp.shutdown = true
	dp.mu.Unlock()
	dp.cancel()
	// The sessions in the relay loop are cut first: their sockets are the
	// loop's, which the group's Close below would not reach. The group
	// stops every connection's writes before it closes any: no relay can
	// pass a clean end on to a peer while the DP closes; every session
	// ends with an error.
	dp.loop.Close()
	dp.g.Close()
	return nil
}

// Shutdown stops accepting connections and new sessions, waits until the
// sessions in flight have ended or ctx is done, then closes everything as
// Close does. It returns ctx's error if ctx ended first.
func (dp *DiscoverPoint) Shutdown(ctx context.Context) error {
	dp.init()
	dp.mu.Lock()
	dp.shutdown = true
	if dp.idle == nil {
		dp.idle = make(chan struct{})
		if dp.sessions == 0 {
			close(dp.idle)
		}
	}
	idle := dp.idle
	dp.mu.Unlock()
	dp.g.CloseListeners()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	dp.Close()
	return err
}

func (dp *DiscoverPoint) closing() bool {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.shutdown
}

// serveConn reads a connection's Aloha and serves it by role.
func (dp *DiscoverPoint) serveConn(c net.Conn) (kept bool) {
	c.SetDeadline(time.Now().Add(dp.HandshakeTimeout))
	ir := mux.NewIdleReader(c) // the link's keepalive, armed after the handshake
	r := plan5.NewReader(ir, dp.MaxLine)
	a, err := plan5link.ReadAloha(r)
	if err != nil {
		dp.refused(refusedHandshake)
		dp.log().Info("rtcp: bad handshake", "remote", c.RemoteAddr(), "err", err)
		dp.refuse(c, fmt.Sprintf("rtcp: bad handshake: %v", err))
		return false
	}
	if !plan5.Compatible(a.V) {
		dp.refused(refusedVersion)
		dp.log().Info("rtcp: incompatible version", "remote", c.RemoteAddr(), "version", a.V)
		plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleAbortVersion, N: dp.Name,
			Error: fmt.Sprintf("rtcp: protocol version %d is not compatible with %d (10000-19999 are, and Plan5's own %d)", a.V, plan5.Version, plan5.LegacyVersion)}, time.Second)
		return false
	}
	if err := plan5link.CheckAloha(a, plan5.RoleIS, plan5.RoleIC); err != nil {
		dp.refused(refusedHandshake)
		dp.log().Info("rtcp: bad Aloha", "remote", c.RemoteAddr(), "err", err)
		dp.refuse(c, err.Error()+"; a DP serves indirect servers (R=2) and indirect clients (R=3)")
		return false
	}
	if a.R == plan5.RoleIS && (a.Transport == wireData || a.Transport == wireSpare) {
		dp.handshakeOver(c) // its Token admits it, or not, at once
	}
	if a.R == plan5.RoleIS && a.Transport == wireData {
		// Its Token, given over the server's admitted link, admits it.
		return dp.serveData(c, r, a)
	}
	if a.R == plan5.RoleIS && a.Transport == wireSpare {
		return dp.serveSpare(c, r, a) // admitted by its Token, as a data link
	}
	who, ok := dp.admit(c, r, a)
	if !ok {
		dp.refused(refusedUnauthorized)
		dp.authFailed(c)
		return false
	}
	dp.handshakeOver(c)
	switch a.R {
	case plan5.RoleIS:
		dp.serveServer(c, r, a, who, ir)
	case plan5.RoleIC:
		dp.serveClient(c, r, a, who, ir)
	}
	return false
}

// refuse answers with an Aloha that carries the reason, for a peer that
// is about to be disconnected.
func (dp *DiscoverPoint) refuse(c net.Conn, reason string) {
	plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: dp.Name, Error: reason}, time.Second)
}

// ourAloha is the DP's answer to theirs. It speaks the peer's version:
// to Plan5's own code, which sent LegacyVersion, the DP answers in it
// (SPEC.md, "Version").
func (dp *DiscoverPoint) ourAloha(theirs *plan5.Aloha) *plan5.Aloha {
	a := &plan5.Aloha{R: plan5.RoleDP, N: dp.Name}
	plan5link.Offer(a, dp.MaxLine)
	if plan5.Legacy(theirs.V) {
		a.V = plan5.LegacyVersion
	}
	a.HeartBeat = plan5link.HeartBeatMS(keepAlivePeriod(dp.KeepAlive))
	return a
}

// serveServer registers an indirect server's link and serves it until it
// ends.
func (dp *DiscoverPoint) serveServer(c net.Conn, r *plan5.Reader, a *plan5.Aloha, who principal, ir *mux.IdleReader) {
	if a.N == "" {
		dp.refused(refusedHandshake)
		dp.refuse(c, "rtcp: an indirect server must give its name in N")
		return
	}
	if err := ValidName(a.N); err != nil {
		dp.refuseBadName(err, c.RemoteAddr())
		dp.refuse(c, err.Error())
		return
	}
	transport := dpTransport(a.Transport)
	if transport == nil {
		dp.refused(refusedHandshake)
		dp.refuse(c, fmt.Sprintf("%s (it speaks %s)", errTransportReason(a.Transport), dpTransportNames()))
		return
	}
	if err := dp.policy().authorizeServer(who, a.N); err != nil {
		dp.refusedName(refusedUnauthorized, a.N)
		dp.log().Info("rtcp: server refused", "name", a.N, "remote", c.RemoteAddr(), "who", who, "reason", err)
		dp.refuse(c, err.Error())
		return
	}
	owner := a.Owner
	if owner == "" {
		// A plain peer has no owner identity: each link is its own owner.
		owner = "conn:" + c.RemoteAddr().String()
	}
	reg := Registration{Name: a.N, Owner: registryOwner(who, owner), DP: dp.Advertise}
	if err := dp.links.check(reg, dp.linkLimits(), false); err != nil {
		dp.refuseLink(c, a.N, err)
		return
	}
	unlockName := dp.links.lockName(a.N) // until the link is in the table
	// Under the DP's context: Close ends a registry call that hangs.
	ctx, cancel := context.WithTimeout(dp.ctx, dp.HandshakeTimeout)
	err := dp.Registry.Register(ctx, reg)
	if errors.Is(err, ErrNameTaken) && dp.evictSquatter(a.N) {
		err = dp.Registry.Register(ctx, reg)
	}
	cancel()
	if err != nil {
		unlockName()
		reason := err.Error()
		if errors.Is(err, ErrNameTaken) {
			dp.refusedName(refusedNameTaken, a.N)
			reason = errNameTakenReason(a.N)
		} else {
			dp.refusedName(refusedRegistry, a.N)
		}
		dp.log().Info("rtcp: server refused", "name", a.N, "remote", c.RemoteAddr(), "reason", reason)
		dp.refuse(c, reason)
		return
	}
	ours := dp.ourAloha(a)
	ours.Transport = a.Transport
	sl := transport(dp, &serverHello{c: c, r: r, ir: ir, theirs: a, ours: ours, reg: reg})
	if sl.ended != nil {
		defer sl.ended()
	}
	// The server's Listen returns when our Aloha arrives, and a client may
	// dial the name at once: the link is in the table before the Aloha
	// leaves, and its opens wait until the Aloha has been written.
	l := &gatedLink{dpLink: sl.link, ready: make(chan struct{})}
	if err := dp.addLink(&linkEntry{link: l, reg: reg, who: who, end: l.Close, policed: true,
		transport: transportName(a.Transport), remote: c.RemoteAddr().String(), direct: a.Direct && !dp.NoDirect}); err != nil {
		unlockName()
		dp.refuseLink(c, a.N, err) // nothing else writes to c yet
		l.Close()
		return
	}
	// A SetPolicy since the check above swept the table without this
	// link: judge it again by the policy in force now.
	if err := dp.policy().authorizeServer(who, a.N); err != nil {
		if dp.links.remove(reg, l) {
			dp.unregister(reg)
		}
		unlockName()
		dp.refusedName(refusedUnauthorized, a.N)
		dp.refuseLink(c, a.N, err)
		l.Close()
		return
	}
	unlockName()
	if err := plan5link.WriteMessage(c, ours, 0); err != nil {
		l.Close()
		dp.removeLink(reg, l)
		return
	}
	c.SetDeadline(time.Time{})
	sl.start()
	close(l.ready)
	dp.log().Info("rtcp: server link up", "name", a.N, "remote", c.RemoteAddr(), "transport", a.Transport)
	select {
	case <-l.Done():
	case <-dp.g.Done():
	}
	l.Close()
	dp.removeLink(reg, l)
	dp.log().Info("rtcp: server link down", "name", a.N, "remote", c.RemoteAddr())
}

// gatedLink is a server link whose opens wait until ready is closed.
type gatedLink struct {
	dpLink
	ready chan struct{}
}

func (g *gatedLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.Done():
		return nil, errors.New("rtcp: the server's link ended during its handshake")
	}
	return g.dpLink.Open(ctx, name, addr)
}

// addLink puts e in the link table, or fails if a bound of the DP does
// not let it in (then it unregisters the name if no link of its owner
// holds it here). Each link added must be removed with removeLink.
func (dp *DiscoverPoint) addLink(e *linkEntry) error {
	held, err := dp.links.add(e, dp.linkLimits())
	if err != nil && !held {
		dp.unregister(e.reg)
	}
	return err
}

// removeLink takes l out of the link table, and frees its name in the
// registry if it was the name's last link here.
func (dp *DiscoverPoint) removeLink(reg Registration, l Link) {
	defer dp.links.lockName(reg.Name)()
	if dp.links.remove(reg, l) {
		dp.unregister(reg)
	}
}

func (dp *DiscoverPoint) unregister(reg Registration) {
	ctx, cancel := context.WithTimeout(context.Background(), dp.HandshakeTimeout)
	defer cancel()
	if err := dp.Registry.Unregister(ctx, reg); err != nil {
		dp.log().Warn("rtcp: unregister failed", "name", reg.Name, "err", err)
	}
}

// openAside is openSession on a goroutine of its own, which it waits
// for. The open path is deep (the link, its Connect and Ack, a cluster
// lookup), and a goroutine keeps the largest stack it ever needed for
// as long as it lives: here, the whole relayed session. Opening aside
// keeps an idle session's relay goroutine at its small stack (port mode
// measured 8.8 KB of stack per idle session this way, 12.3 KB inline).
func (dp *DiscoverPoint) openAside(ctx context.Context, name, client, addr string, who principal) (net.Conn, func(), error) {
	type opened struct {
		c       net.Conn
		unlimit func()
		err     error
	}
	ch := make(chan opened, 1)
	go func() {
		c, unlimit, err := dp.openLimited(ctx, name, client, addr, who) // limits_rate.go
		ch <- opened{c, unlimit, err}
	}()
	offer, _ := ctx.Value(directRequestKey{}).(*directOffer)
	r := sendEarly(offer, ch) // the early offer, if asked, while we wait
	return r.c, r.unlimit, r.err
}

// openSession opens a session to the server name for the client who
// (called client, at addr), trying the server's other links if one fails
// under it. The error is the reason to give the client.
func (dp *DiscoverPoint) openSession(ctx context.Context, name, client, addr string, who principal) (net.Conn, error) {
	opened, err := dp.beginOpen(name)
	if err != nil {
		return nil, err
	}
	defer opened()
	var tried map[Link]bool
	var drained error // a draining link's refusal, for want of another link
	for {
		e, ok := dp.links.pick(name, tried)
		if !ok || e == nil {
			if c, handled, err := dp.openRemote(ctx, name, client, addr, who); handled {
				return c, err
			}
		}
		if !ok && drained == nil {
			return nil, &noServerError{name}
		}
		if e == nil {
			if drained != nil {
				return nil, fmt.Errorf("rtcp: server %q refused: %w", name, drained)
			}
			return nil, fmt.Errorf("rtcp: every link to server %q failed", name)
		}
		var c net.Conn
		err := errNotAllowed
		offer, _ := ctx.Value(directRequestKey{}).(*directOffer)
		if dp.linkAllowed(e) { // else it is closed now
			octx := ctx
			if offer != nil && e.direct {
				// A fresh secret for each server asked: one whose open
				// fails after it took the offer must not hold the
				// secret of the session another server gets.
				rand.Read(offer.secret)
				octx = context.WithValue(ctx, directKey{}, offer)
				offer.opening(e.remote)
			}
			c, err = e.link.Open(octx, client, addr)
		}
		if err == nil {
			if offer != nil && e.direct {
				offer.server = e.remote
			}
			return c, nil
		}
		if errors.Is(err, mux.ErrDraining) && ctx.Err() == nil {
			// Its server is closing (a restart hands the name to a new
			// process under the same key): the link leaves the rotation,
			// and another link takes the client.
			dp.links.drain(e.link)
			drained = err
			continue
		}
		if errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return nil, fmt.Errorf("rtcp: server %q refused: %w", name, err)
		}
		if tried == nil {
			tried = make(map[Link]bool)
		}
		tried[e.link] = true
	}
}

// serveClient serves an indirect client's connection: one Connect, one
// session.
func (dp *DiscoverPoint) serveClient(c net.Conn, r *plan5.Reader, a *plan5.Aloha, who principal, ir *mux.IdleReader) {
	ours := dp.ourAloha(a)
	if a.Transport == wireRaw {
		ours.Transport = wireRaw
		if r.Buffered().Buffered() > 0 {
			// The client sent its Connect with its Aloha (as rtcp's
			// does): our Aloha goes with the answer, in one write and
			// one wake-up of the client instead of two.
			dp.serveRawClient(c, r, a, who, ours)
			return
		}
	}
	if err := plan5link.WriteMessage(c, ours, 0); err != nil {
		return
	}
	if ours.Transport == wireRaw {
		dp.serveRawClient(c, r, a, who, nil)
		return
	}
	c.SetDeadline(time.Time{})
	cfg := plan5link.Config(ours, a)
	cfg.Name = "connection from client " + c.RemoteAddr().String()
	cfg.ManualAck = true
	cfg.AcceptBacklog = 1
	dp.flow.apply(&cfg, dp.log())
	fr := plan5link.NewFramer(r, c)
	fr.SetHeartbeat(ours)
	fr.SetLegacy(plan5.Legacy(a.V))
	s := mux.New(c, fr, cfg)
	defer s.Close()
	startKeepAlive(ir, s, ours, a)

	t := time.NewTimer(dp.HandshakeTimeout)
	var st *mux.Stream
	select {
	case st = <-s.Streams():
		t.Stop()
		// A client connection carries one session; say so to a second
		// Connect rather than leave it waiting.
		s.RefuseOpens("rtcp: a client connection carries one session; dial the DP again for another")
		if err := ValidDoorName(st.Name()); err != nil {
			dp.refuseBadName(err, c.RemoteAddr())
			st.Ack(err)
			return
		}
	case <-t.C:
		dp.refused(refusedHandshake)
		dp.log().Info("rtcp: client sent no Connect in time", "remote", c.RemoteAddr())
		s.Abort(fmt.Errorf("rtcp: no Connect within %v of the Aloha", dp.HandshakeTimeout))
		return
	case <-s.Done():
		t.Stop()
		return
	case <-dp.g.Done():
		t.Stop()
		return
	}
	dp.serveSession(sessionRequest{
		conn: st, name: st.Name(), client: who.clientName(a.N), who: who, addr: who.clientAddr(c), via: a.Via,
		answer: func(err error) bool { return st.Ack(err) == nil },
		end:    s.Abort,
	})
}

// serveRawClient serves a client that asked for raw bytes after the Ack:
// Connect and Ack are Plan5 messages, then the connection is the session.
// If ours is not nil, the DP's Aloha has not been sent yet: it goes in
// front of the first message.
func (dp *DiscoverPoint) serveRawClient(c net.Conn, r *plan5.Reader, a *plan5.Aloha, who principal, ours *plan5.Aloha) {
	// A write that failed may have sent part of its message: nothing may
	// follow it (the client would read the rest of the line as the next
	// message's), so its error stands for every later answer, and is
	// logged once: the session it ends says nothing more of it (the Ack's
	// failure is openRequested's "client went away", which it does not
	// log). The answers come one after another from this goroutine (the
	// early offer's too: sendEarly, in openAside), so failed needs no lock.
	var failed error
	answer := func(m plan5.Message, timeout time.Duration) error {
		if failed != nil {
			return failed
		}
		if ours != nil {
			a := ours
			ours = nil
			failed = plan5link.WriteMessages(c, timeout, a, m)
		} else {
			failed = plan5link.WriteMessage(c, m, timeout)
		}
		if failed != nil {
			dp.log().Info(logAnswerFailed, "remote", c.RemoteAddr(), "message", m.Type(), "err", failed)
		}
		return failed
	}
	m, err := r.ReadMessage()
	if err != nil {
		dp.log().Info("rtcp: client sent no Connect", "remote", c.RemoteAddr(), "err", err)
		answer(closeMessage(-1, fmt.Sprintf("rtcp: want Connect after the Aloha: %v", err)), time.Second)
		return
	}
	cm, ok := m.(*plan5.Connect)
	if !ok {
		answer(closeMessage(-1, fmt.Sprintf("rtcp: want Connect after the Aloha, got %v", m.Type())), time.Second)
		return
	}
	if err := ValidDoorName(cm.N); err != nil {
		dp.refuseBadName(err, c.RemoteAddr())
		answer(&plan5.Ack{X: -1, R: err.Error()}, time.Second)
		return
	}
	c.SetDeadline(time.Time{})
	cc := afterHandshake(c, r.Buffered())
	var offer *directOffer
	if cm.Direct && !dp.NoDirect && (a.Via == "" || who.vouchedAddr()) {
		// A client that reached this DP, at the address of its
		// connection; or one that another DP of the cluster carries
		// here, at the address that DP saw and vouched for with the
		// cluster's key (ClientAddr). A hop of any other key is
		// not brokered: the address of its connection is the
		// carrying DP's.
		offer = newDirectOffer(who.clientAddr(cc))
		if cm.EarlyPeer {
			// Sent by this goroutine, as the open goes out and while
			// it waits for the open's outcome (openAside), which
			// answer sends after it. A failed write is the answer's
			// to report.
			offer.askEarly(func(server string, secret []byte) {
				answer(&plan5.Ack{X: 0, Peer: server, Secret: secret}, dp.HandshakeTimeout)
			})
		}
	}
	dp.serveSession(sessionRequest{
		conn: cc, name: cm.N, client: who.clientName(a.N), who: who, addr: who.clientAddr(cc), via: a.Via,
		direct: offer,
		answer: func(err error) bool {
			ack := &plan5.Ack{X: 1}
			if err != nil {
				ack = &plan5.Ack{X: -1, R: err.Error()}
			} else if offer.brokered() {
				ack.Peer, ack.Secret = offer.server, offer.secret
			}
			return answer(ack, dp.HandshakeTimeout) == nil
		},
	})
}

// logAnswerFailed is logged when a raw client's answer could not be
// written: its connection ends, with nothing more written to it.
const logAnswerFailed = "rtcp: answer to client failed; its connection ends"

// closeMessage tells a peer why its connection ends.
func closeMessage(x int64, reason string) *plan5.Close {
	return &plan5.Close{X: x, R: reason, Abort: true}
}

// A sessionRequest is what a door asks of the DP: a session to the server
// name for a client whose bytes come and go on conn. Every door fills one
// in - the JSON client (conn is its stream), the raw client, port mode,
// Relay (the seed doors) - and serveSession does the rest.
type sessionRequest struct {
	conn   net.Conn  // the client's side of the session
	name   string    // the server asked for
	client string    // the client's name, as the server is told it
	who    principal // whom the Policy judges: anonymous at a door without keys
	addr   net.Addr  // the client's address: for Allow rules, and told to the server
	via    string    // the DP that carried the client here, if one did

	// direct, if not nil, is the client's request for a direct path:
	// the open sends it to a server link that takes part, and the answer
	// carries it back to the client (direct.go).
	direct *directOffer

	// answer, if not nil, tells the client the outcome of the open (nil:
	// open) and reports whether the client can still be reached. A door
	// without it (port mode, Relay) has only the bytes: a refusal ends
	// conn.
	answer func(refusal error) bool
	// end, if not nil, ends the session when a SetPolicy no longer
	// allows it (the JSON client's whole link); nil: conn is closed,
	// and cut is canceled for a session in the relay loop, whose sockets
	// a Close of conn does not reach.
	end func(reason error)
	cut context.Context
}

// serveSession is the one path from a door to a server: openRequested,
// then it joins req.conn to the session until both ends are done. It
// returns why the session was refused, or how the relay ended. It does
// not close req.conn on a refusal: the door does (after its answer, if it
// has one).
func (dp *DiscoverPoint) serveSession(req sessionRequest) error {
	// req goes by pointer: a copy in this frame would stay on the stack
	// of every idle session (docs/performance.md).
	is, endSession, err := dp.openRequested(&req)
	if err != nil {
		return err
	}
	defer endSession()
	// The log call is one of its own: its arguments would stay in this
	// frame, on the stack of every idle session (docs/performance.md).
	dp.logSessionOpen(req.name, req.addr)
	var brokered *brokeredRelay
	if req.direct.brokered() && !req.direct.carried {
		dp.counts.directBrokered.Add(1)
		brokered = dp.newBrokeredRelay()
	}
	cut := req.cut
	if cut == nil {
		cut = context.Background() // a stream: never in the loop
	}
	_, err = dp.join(cut, req.conn, is, req.name, brokered)
	return err
}

func (dp *DiscoverPoint) logSessionOpen(name string, client net.Addr) {
	dp.log().Debug("rtcp: session open", "server", name, "client", client)
}

// openRequested authorises the client of req, counts the session against
// the DP's bounds, opens it on one of the server's links (a session that
// another DP carried here, req.via, on local links only) and answers the
// client. It returns the server's side of the session and endSession,
// which the caller calls once the session has ended; or the reason for
// the refusal, which the client has been told. A door that does not join
// a connection to the session (an HTTP proxy, say) may leave req.conn nil.
func (dp *DiscoverPoint) openRequested(req *sessionRequest) (is net.Conn, endSession func(), err error) {
	// A SetPolicy from here on that no longer allows the session ends it
	// (policeSession: before the check, so that none is missed).
	end := req.end
	if end == nil && req.conn != nil {
		c := req.conn // not req, which the closure would move to the heap
		var cancel context.CancelCauseFunc
		req.cut, cancel = context.WithCancelCause(context.Background())
		end = func(reason error) {
			cancel(reason)
			c.Close()
		}
	} else if end == nil {
		end = func(error) {}
	}
	policed := dp.policeSession(req.who, req.name, req.addr, end)
	refuse := func(err error) (net.Conn, func(), error) {
		policed()
		dp.log().Info("rtcp: session refused", "server", req.name, "client", req.addr, "who", req.who, "reason", err)
		if req.answer != nil {
			req.answer(err)
		}
		return nil, nil, err
	}
	if err := dp.policy().authorizeClient(req.who, req.name, req.addr); err != nil {
		dp.refusedName(refusedUnauthorized, req.name)
		return refuse(err)
	}
	endSession, err = dp.beginSession(req.name)
	if err != nil {
		dp.refusedOpen(req.name, err)
		return refuse(err)
	}
	// Until the session ends cleanly, any end of a TCP client's
	// connection - this process dying included - is a reset, never a
	// clean FIN.
	tcpreset.SetReset(tcpreset.Under(req.conn), true)
	ctx, cancel := context.WithTimeout(dp.ctx, dp.HandshakeTimeout)
	if req.via != "" {
		ctx = context.WithValue(ctx, forwardedKey{}, req.via)
	}
	if req.direct != nil {
		ctx = context.WithValue(ctx, directRequestKey{}, req.direct)
	}
	addr := ""
	if req.addr != nil { // a Relay's conn may have no RemoteAddr
		addr = req.addr.String()
	}
	is, unlimit, err := dp.openAside(ctx, req.name, req.client, addr, req.who)
	cancel()
	if err != nil {
		dp.refusedOpen(req.name, err)
		refuse(err) // before endSession: Shutdown waits for the answer
		endSession()
		return nil, nil, err
	}
	// The session's counts - in the Policy's Limits (unlimit), then in
	// the DP's bounds - are released here, once, when it has ended: not
	// by closing is, which stays the link's own connection (and keeps
	// its fast paths) unless its bytes are paced.
	counted := endSession // not endSession, the result this function sets
	if unlimit != nil {
		unbound := endSession
		counted = func() { unlimit(); unbound() }
	}
	if req.answer != nil && !req.answer(nil) {
		is.Close()
		counted()
		policed()
		return nil, nil, errors.New("rtcp: the client went away")
	}
	return is, func() { counted(); policed() }, nil
}

// ServePort accepts plain TCP connections on l and carries each to the
// server name, for clients that cannot run rtcp (ssh, psql, a SCADA
// system). A connection the DP refuses - name has no server, the Policy
// or a bound says no, the DP is shutting down - is reset at once, as one
// cut off is: only a session that ends cleanly ends with a FIN. ServePort
// returns as Serve does, or at once, closing l, with an error matching
// ErrBadName if name is not a ValidDoorName.
func (dp *DiscoverPoint) ServePort(l net.Listener, name string) error {
	if err := ValidDoorName(name); err != nil {
		l.Close()
		return err
	}
	return dp.serve(l, func(c net.Conn) bool {
		resetWhenClosed(c) // the relay undoes it if the session ends cleanly
		dp.serveSession(sessionRequest{conn: c, name: name, addr: c.RemoteAddr()})
		return false
	})
}

// ListenAndServePort listens on the TCP address addr and calls ServePort.
func (dp *DiscoverPoint) ListenAndServePort(addr, name string) error {
	dp.init()
	if err := ValidDoorName(name); err != nil {
		return err
	}
	if dp.closing() {
		return ErrDiscoverPointClosed
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return dp.ServePort(l, name)
}
