package rtcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/internal/tcpreset"
	"rtcp/protocol/plan5"
)

// A Dialer connects indirect clients. The zero value is ready to use. A
// dial sends its Connect with its Aloha, so that the session opens one
// round trip to the DP after the TCP connection, on the raw leg or, at a
// DP that does not offer it, on the JSON leg, whichever the DP answers;
// not with a Credential (the proof comes first). Plan5's own DP may lose
// a Connect sent so: a Dialer that meets one dials it again (a session
// that DP opened for the first Connect, if it read it, ends at once) and
// remembers it, as it remembers which DPs offered the raw leg (for a DP of a cluster
// carrying a session on). A Dialer may be kept for many dials; do not
// copy it after its first use.
type Dialer struct {
	// Name is this client's name, sent to the DP and shown to the server
	// as the RemoteAddr of the session. Optional. A DP that authenticates
	// the client's Credential shows the key's name instead.
	Name string

	// Transport selects the client leg's wire. TransportJSON (the zero
	// value) speaks the seed's protocol: the session's bytes travel in
	// Data messages. TransportYamux asks the DP for raw bytes after the
	// Ack: no JSON or base64 per byte, the speed of plain TCP. A DP that
	// does not offer it gets TransportJSON.
	Transport Transport

	// Dial opens the TCP connection to the DP (or, for a direct client, to
	// the server). Nil means a net.Dialer. Tests inject in-memory pipes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives debug logs. Nil is silent.
	Logger *slog.Logger

	// TLSConfig, if set, runs TLS to the DP (or, with an empty name, to
	// the direct server) before anything else; every byte of the
	// handshake and the session travels inside it. ServerName defaults to
	// the host of the address dialled.
	TLSConfig *tls.Config

	// Credential is the key this client proves it holds to a DP whose
	// Policy asks for one. The secret never crosses the wire. Nil: none.
	Credential *Credential

	// KeepAlive is the heartbeat period of a JSON session's connection to
	// the DP: the session fails, with an error, when nothing has come
	// from the DP for twice this long. Default 15 s; at least 100 ms;
	// negative turns it off. A raw session (TransportYamux) carries only
	// the session's bytes and relies on TCP's keepalive.
	KeepAlive time.Duration

	// Direct asks the DP for a direct path to the server, on the raw leg
	// (as TransportYamux does, whatever Transport says): if the server
	// takes part too (ListenConfig.Direct) and the DP brokers the session,
	// Dial returns the session on the relay at once, both sides try, for
	// DirectTimeout, to reach each other directly, and the session moves
	// to the direct connection, each direction at its next Write, without
	// losing or reordering a byte. A failed punch is no error: the session
	// stays on the relay (Conn.Direct and Conn.DirectError say what
	// happened). The connection to the DP is
	// then dialled with SO_REUSEPORT (with Dial set, the connection Dial
	// makes must be bound so). A direct connection is not encrypted: with
	// TLSConfig set, Direct is ignored. See docs/direct.md.
	Direct bool

	// DirectTimeout bounds the attempt to reach the server directly, in
	// the background of a session that runs on the relay meanwhile (from
	// the DP's early offer, before Dial returns, or from its Ack; where
	// the DP is near, under 1 ms away, from the session's first answer,
	// at most 2 ms later: docs/direct.md, "Near the DP");
	// default DefaultDirectTimeout (1 s). A direct connection that
	// goes silent fails after about twice KeepAlive (TCP keepalive and
	// TCP_USER_TIMEOUT), so that a path that drops is an error, never a
	// clean end.
	DirectTimeout time.Duration

	netns nsFunc // where sockets are made (tests: a network namespace); nil: here

	known knownDPs // what the DPs dialled answered: whether to send Connect early
}

// direct reports whether the Dialer asks for direct sessions.
func (d *Dialer) direct() bool { return d.Direct && d.TLSConfig == nil }

// dialAs is what a dial says of its client: its name and the transport it
// asks for, and for a DP that carries a session on to another DP
// (cluster.go), hop, which fills in the Aloha of that hop.
type dialAs struct {
	name      string
	transport Transport
	hop       func(*plan5.Aloha)
	// broker, on a hop, asks the DP it dials to broker a direct path for
	// the client the hop carries (Connect Direct) and takes its answer:
	// the hop's Ack's Peer and Secret, which the carrying DP passes on to
	// its client (cluster.go).
	broker *hopBroker
}

// knownDPs holds what a Dialer learned of the DPs it dialled that changes
// how it dials them: those that offered the raw client leg, and those
// that answered in Plan5's legacy version. The zero value knows none.
type knownDPs struct {
	mu    sync.Mutex // guards addrs and nearBy
	addrs map[string]dpKind
	// nearBy holds the DPs that the last dial with Direct found near
	// (dpNear of the time from its Aloha to the open's answer, the
	// Ack): its punch's listener waits for its gate (directgate.go).
	nearBy map[string]bool
}

// dpKind is what a Dialer learned of a DP from its Aloha.
type dpKind int8

const (
	dpUnknown dpKind = iota // never dialled, or a DP that speaks only the JSON leg
	dpRaw                   // offers the raw client leg
	dpLegacy                // Plan5's own code (V 113): loses what comes with the Aloha
)

func (k *knownDPs) get(addr string) dpKind {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addrs[addr]
}

// near reports whether the last dial with Direct found the DP at addr
// near.
func (k *knownDPs) near(addr string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nearBy[addr]
}

// setNear records whether a dial with Direct found the DP at addr near.
func (k *knownDPs) setNear(addr string, near bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !near {
		delete(k.nearBy, addr)
		return
	}
	if k.nearBy == nil {
		k.nearBy = make(map[string]bool)
	}
	k.nearBy[addr] = true
}

// set records what the DP at addr is.
func (k *knownDPs) set(addr string, kind dpKind) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kind == dpUnknown {
		delete(k.addrs, addr)
		return
	}
	if k.addrs == nil {
		k.addrs = make(map[string]dpKind)
	}
	k.addrs[addr] = kind
}

// DialContext connects to the indirect server name through the DP at addr,
// or, with an empty name, directly to the TCP server at addr. A name that
// is not a ValidDoorName fails at once with an error matching ErrBadName.
// The context bounds connecting, not the session. addr may list several
// DPs of a cluster separated by commas: each is tried in turn until one
// opens the session.
func (d *Dialer) DialContext(ctx context.Context, addr, name string) (net.Conn, error) {
	as := dialAs{name: d.Name, transport: d.Transport}
	if d.direct() {
		as.transport = TransportYamux // a direct path is brokered on the raw leg
	}
	return d.dial(ctx, addr, name, as)
}

// dial is DialContext for the client as.
func (d *Dialer) dial(ctx context.Context, addr, name string, as dialAs) (net.Conn, error) {
	if name == "" {
		return dialDP(ctx, d.Dial, d.TLSConfig, addr)
	}
	if err := ValidDoorName(name); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "rtcp", Addr: &Addr{Name: name, Addr: addr}, Err: err}
	}
	if dps := splitDPs(addr); len(dps) > 1 {
		return d.dialCluster(ctx, dps, name)
	}
	raddr := &Addr{Name: name, Addr: addr}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "rtcp", Addr: raddr, Err: err}
	}
	dial := dpDialer(d.Dial, d.direct(), d.netns)
	for early := true; ; early = false {
		c, err := dialDP(ctx, dial, d.TLSConfig, addr)
		if err != nil {
			return nil, opErr(err)
		}
		conn, err := d.handshake(ctx, c, addr, name, as, early)
		if err == errEarlyLost && early {
			c.Close()
			continue // dial again, once, and send Connect after the DP's Aloha
		}
		if err != nil {
			c.Close()
			return nil, opErr(err)
		}
		return conn, nil
	}
}

// errEarlyLost is handshake's report that the DP answered a Connect sent
// with the Aloha in Plan5's legacy version: Plan5's own code reads each
// message with a new reader and drops what the read brought after it, so
// the Connect may be lost, or may not: the connection cannot be trusted
// with the session, and the dial starts again without sending early.
var errEarlyLost = errors.New("rtcp: the DP speaks Plan5's legacy version, which may lose a Connect sent with the Aloha")

func (d *Dialer) handshake(ctx context.Context, c net.Conn, addr, name string, as dialAs, mayEarly bool) (*Conn, error) {
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{R: plan5.RoleIC, N: as.name}
	if as.hop != nil {
		as.hop(ours)
	}
	plan5link.Offer(ours, plan5.DefaultMaxLine)
	ours.HeartBeat = plan5link.HeartBeatMS(keepAlivePeriod(d.KeepAlive))
	if as.transport != TransportJSON {
		ours.Transport = wireRaw
	}
	ir := mux.NewIdleReader(c)
	r := plan5.NewReader(ir, plan5.DefaultMaxLine)
	var side *directSide // how this session punches, if it asks for a direct path
	if d.direct() && as.hop == nil {
		side = newDirectSide(c, d.DirectTimeout, d.KeepAlive, d.netns)
		if side != nil {
			// The client's port toward the DP is its session's own:
			// it may listen there for the server's connect (peers
			// with no NAT between them; see punch.Config.Accept).
			side.accept = true
		}
	}
	var punchL net.Listener // the punch's listener (Config.Accept), or nil
	var sent func()         // called once the Aloha (and the Connect) went out
	near := side != nil && d.known.near(addr)
	if side != nil && !near {
		// It listens from the moment its Connect goes out (with the
		// Aloha, as a rule), not at the Ack: the server's punch starts
		// at the open, and its first connects are taken then, not
		// refused until this side's punch starts. The listener is made
		// while the DP's answer is on its way, by this goroutine, which
		// waits for the answer anyway, and costs no goroutine: its system
		// calls are off the first byte's path wherever the answer takes
		// longer than they do (on loopback, 6-11 % of dials found the
		// answer waiting when the listener was up: docs/direct.md).
		// Not where the last dial found the DP near (directgate.go):
		// the answer takes no longer than the listener there, and the
		// punch waits for the session's first bytes, then makes its own
		// (nor does it ask for the early offer, which would start a
		// punch that waits all the same: it starts at the Ack).
		sent = func() { punchL = side.listen() }
	}
	if side != nil {
		defer func() { closeListener(punchL) }() // unless the punch took it
	}
	var early plan5.Message // a Connect sent with the Aloha
	if mayEarly && d.earlyConnect(addr, as) {
		early = &plan5.Connect{N: name, Direct: side != nil || as.broker != nil, EarlyPeer: side != nil && !near}
	}
	sentAt := time.Now()
	theirs, err := exchangeAloha(c, r, ours, addr, d.Credential, early, sent)
	// A round trip to the DP, and what it did before its first answer:
	// the open, whose early offer comes with its Aloha (a key's proof,
	// if any, more); without the early offer, a Connect sent with the
	// Aloha has the DP's Aloha come with its Ack: the open's answer.
	rtt := time.Since(sentAt)
	if err != nil {
		stop()
		return nil, ctxErr(ctx, renamed(err, name))
	}
	switch {
	case plan5.Legacy(theirs.V):
		d.known.set(addr, dpLegacy)
		if early != nil {
			stop()
			return nil, errEarlyLost
		}
	case theirs.Transport == wireRaw:
		d.known.set(addr, dpRaw)
	default:
		d.known.set(addr, dpUnknown)
	}
	local := &Addr{Name: as.name, Addr: c.LocalAddr().String()}
	remote := &Addr{Name: name, Addr: addr}
	if theirs.Transport == wireRaw && ours.Transport == wireRaw {
		var p *clientPunch // the punch, once the DP's early offer came
		var offered func(*plan5.Ack)
		if side != nil && !near {
			// The DP tells the server's address and the secret as it
			// asks the server (EarlyPeer): the punch starts then, as
			// the server's does, a round trip before the Ack (where
			// the DP is near, it waits for the session's first bytes:
			// directgate.go).
			offered = func(o *plan5.Ack) {
				p = side.startPunch(o.Peer, o.Secret, punchL, rtt)
				punchL = nil // the punch's now
			}
		}
		rc, ack, err := d.connectRaw(c, r, name, addr, local, remote, early != nil, side != nil || as.broker != nil, offered)
		stopErr := stop()
		if err != nil {
			p.abandon()
			return nil, ctxErr(ctx, err)
		}
		if stopErr != nil {
			p.abandon()
			return nil, stopErr
		}
		if side != nil {
			// Near, for the next dial, by the time to the open's
			// answer, whether or not this dial asked for the early
			// offer: without it, the DP's first answer is the Ack
			// (rtt above), and the early offer, which comes before
			// the server's answer, would make a DP near the client
			// but far from its server (or one whose server answers
			// late, ManualAck) near on every other dial only. There
			// the early offer gains the punch the server's answer.
			d.known.setNear(addr, dpNear(time.Since(sentAt)))
		}
		if as.broker != nil && brokersDirect(ack.Peer, ack.Secret) {
			as.broker.peer, as.broker.secret = ack.Peer, ack.Secret
		}
		if side == nil || !brokersDirect(ack.Peer, ack.Secret) {
			p.abandon()
			return newConn(rc, nil), nil
		}
		if !p.serves(ack) {
			// No early offer, or one for another link than the one
			// the session opened on (the first failed under it).
			p.abandon()
			p = side.startPunch(ack.Peer, ack.Secret, punchL, rtt)
			punchL = nil
		}
		return d.clientMove(p, rc), nil
	}
	if err := stop(); err != nil {
		return nil, err
	}
	cfg := plan5link.Config(ours, theirs)
	cfg.Name = "connection to DP " + addr
	cfg.AcceptBacklog = -1 // a DP opens nothing toward a client
	cfg.StreamAddrs = func(string, string, bool) (net.Addr, net.Addr) { return local, remote }
	fr := plan5link.NewFramer(r, c)
	fr.SetHeartbeat(ours)
	fr.SetLegacy(plan5.Legacy(theirs.V))
	if early != nil {
		// The Connect sent early is this leg's Connect (the Direct key,
		// if any, is unknown to a DP without the raw leg, so ignored):
		// the DP's first answer is its Ack.
		cfg.Sent = &mux.SentOpen{Name: name, At: sentAt}
	}
	sess := mux.New(c, fr, cfg)
	startKeepAlive(ir, sess, ours, theirs)
	var st *mux.Stream
	if early != nil {
		st, err = sess.AwaitSent(ctx)
	} else {
		st, err = sess.Open(ctx, name, "")
	}
	if err != nil {
		sess.Close()
		var re *mux.RefusedError
		if errors.As(err, &re) {
			return nil, &RefusedError{Name: name, DP: addr, Reason: re.Reason}
		}
		return nil, ctxErr(ctx, err)
	}
	if d.Logger != nil {
		d.Logger.Debug("rtcp: session open", "server", name, "dp", addr, "x", st.ID())
	}
	return newConn(st, func() { sess.Close() }), nil
}

// earlyConnect reports whether a dial of as to the DP at addr sends its
// Connect with its Aloha, a round trip before the DP's answer: unless the
// DP answered in Plan5's legacy version before (its reader loses what
// comes with the Aloha), or a key must be proven first (the proof goes
// between the Alohas). A Connect sent early opens the session on either
// client leg: the raw leg's, or the JSON leg's if the DP does not offer
// the raw one. A DP that carries a session on to another DP (as.hop) sends
// early only to a DP that offered the raw leg before.
func (d *Dialer) earlyConnect(addr string, as dialAs) bool {
	if d.Credential != nil {
		return false
	}
	kind := d.known.get(addr)
	if as.hop != nil {
		return kind == dpRaw
	}
	return kind != dpLegacy
}

// connectRaw sends Connect (asking for a direct path if direct) and reads
// the Ack; after it, c carries the session's bytes as they are. With
// offered not nil, the Connect asks for the DP's early offer too
// (EarlyPeer), and offered gets it, once, if it comes before the Ack.
func (d *Dialer) connectRaw(c net.Conn, r *plan5.Reader, name, addr string, local, remote net.Addr, sent, direct bool, offered func(*plan5.Ack)) (*rawConn, *plan5.Ack, error) {
	if !sent {
		if err := plan5link.WriteMessage(c, &plan5.Connect{N: name, Direct: direct, EarlyPeer: offered != nil}, 0); err != nil {
			return nil, nil, err
		}
	}
	m, err := r.ReadMessage()
	if err != nil {
		return nil, nil, err
	}
	if o, ok := m.(*plan5.Ack); ok && o.X == 0 && offered != nil && brokersDirect(o.Peer, o.Secret) {
		// The early offer: the answer follows.
		offered(o)
		if m, err = r.ReadMessage(); err != nil {
			return nil, nil, err
		}
		if a, ok := m.(*plan5.Ack); ok && a.X == 0 && brokersDirect(a.Peer, a.Secret) {
			// Not an answer (X 0 would open the session, whose
			// bytes would then begin with the DP's real Ack).
			return nil, nil, fmt.Errorf("rtcp: the DP at %s sent its early offer (an Ack with X 0, Peer and Secret) twice; it does not follow Plan5's direct sessions: dial it without Direct", addr)
		}
	}
	var ack *plan5.Ack
	switch m := m.(type) {
	case *plan5.Ack:
		if m.X < 0 {
			return nil, nil, &RefusedError{Name: name, DP: addr, Reason: m.R}
		}
		ack = m
	case *plan5.Close:
		return nil, nil, &RefusedError{Name: name, DP: addr, Reason: m.R}
	default:
		return nil, nil, fmt.Errorf("rtcp: the DP answered Connect with %v, want Ack", m.Type())
	}
	resetOnDeath(c)
	return &rawConn{Conn: afterHandshake(c, r.Buffered()), local: local, remote: remote}, ack, nil
}

// rawConn is a client's raw session: the TCP connection to the DP, with
// rtcp addresses.
type rawConn struct {
	net.Conn
	local, remote net.Addr
	reset         atomic.Pointer[error] // a Write met a reset (rawleg.go)
	fin           atomic.Bool           // CloseWrite sent, or is about to send, a FIN (rawleg.go)
}

func (c *rawConn) LocalAddr() net.Addr  { return c.local }
func (c *rawConn) RemoteAddr() net.Addr { return c.remote }

func (c *rawConn) CloseWrite() error {
	if tcpreset.SendsFIN(c.Conn) {
		c.fin.Store(true) // before the FIN leaves: see Read
	}
	tcpreset.SetReset(tcpreset.Under(c.Conn), false) // our side ends cleanly
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		err := cw.CloseWrite()
		if err != nil && tcpreset.Is(err) {
			// Over TLS, CloseWrite writes (close_notify), and may
			// take the reset as a Write does (rawleg.go).
			c.reset.CompareAndSwap(nil, &err)
		}
		return err
	}
	return ErrNoHalfClose
}

// renamed puts the server's name into a refusal of the handshake.
func renamed(err error, name string) error {
	var re *RefusedError
	if errors.As(err, &re) {
		re.Name = name
	}
	return err
}

// exchangeAloha sends ours (and then, in the same write, early if it is
// not nil) and reads the DP's answer, which must be a compatible Aloha
// from a DP with no Error. With cred, ours names its key, and if the DP
// challenges, the proof goes out before the answer comes. sent, if not
// nil, is called once ours went out, before the answer is read.
func exchangeAloha(c net.Conn, r *plan5.Reader, ours *plan5.Aloha, addr string, cred *Credential, early plan5.Message, sent func()) (*plan5.Aloha, error) {
	if cred != nil {
		ours.Key = cred.Key
	}
	b := plan5.AppendMessage(nil, ours)
	if early != nil {
		b = plan5.AppendMessage(b, early)
	}
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	if sent != nil {
		sent()
	}
	theirs, err := plan5link.ReadAloha(r)
	err = firstAnswerError(err, c, addr)
	if err == nil && theirs.Challenge != nil && theirs.Error == "" {
		if err := answerChallenge(c, ours, theirs, cred); err != nil {
			return nil, err
		}
		theirs, err = plan5link.ReadAloha(r)
		if err == nil && theirs.Challenge != nil {
			err = errors.New("rtcp: the DP sent a second authentication challenge")
		}
	}
	if err != nil {
		return nil, err
	}
	if theirs.Error != "" {
		return nil, &RefusedError{Name: ours.N, DP: addr, Reason: theirs.Error}
	}
	if theirs.R == plan5.RoleAbortVersion {
		return nil, &RefusedError{Name: ours.N, DP: addr, Reason: "incompatible protocol version (the DP answered AbortVersion)"}
	}
	if err := plan5link.CheckAloha(theirs, plan5.RoleDP); err != nil {
		return nil, err
	}
	return theirs, nil
}

// firstAnswerError says what a failure to read the DP's first answer
// most likely means: a peer that does not speak rtcp, or a DP that wants
// TLS and closes a connection that does not start with it.
func firstAnswerError(err error, c net.Conn, addr string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, plan5.ErrBadType), errors.Is(err, plan5.ErrBadJSON), errors.Is(err, plan5.ErrLineTooLong):
		return fmt.Errorf("rtcp: the peer at %s does not speak rtcp (is it a DP?): %w", addr, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		if _, ok := c.(*tls.Conn); !ok {
			return fmt.Errorf("rtcp: the DP at %s closed the connection during the handshake; it may require TLS (TLSConfig): %w", addr, err)
		}
		return fmt.Errorf("rtcp: the DP at %s closed the connection during the handshake: %w", addr, err)
	}
	return err
}

// ctxErr prefers the context's error when the context ended the setup.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
