package rtcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"rtcp/internal/backoff"
	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/internal/relay"
	"rtcp/internal/tcpreset"
	"rtcp/protocol/plan5"
)

// The TCP transport (TransportTCP) gives every session a TCP connection of
// its own, a data link, the way rathole does: the server keeps a JSON
// control link, and the DP joins the client's connection and the
// session's data link byte for byte (between two TCP connections the
// kernel splices them).
//
// A session gets its data link one of two ways:
//
//   - A spare: the server keeps a few data links ready at the DP for each
//     control link (ListenConfig.Spares, default 2), already through their
//     handshake, the way frp's pool does. The DP writes the session's
//     Connect on an idle spare, the server answers Ack on it (or Ack X=-1
//     with its reason) and dials a new spare in its place. One crossing
//     each way between server and DP, as for two plain relays.
//   - A dial, when no spare is idle (or a peer does not keep spares): the
//     DP asks over the control link with a Connect that carries a fresh
//     Token, the server acknowledges it at once (Acks answer Connects in
//     order) and dials off its accept loop, presenting the token in an
//     Aloha with Transport "data"; a dial that fails ends the control
//     stream with the reason. A dial and two more crossings.
//
// The server offers spares in its control link's Aloha (Spares), and the
// DP grants them in its answer (Spares, and the Token the spares present).
// A peer that does not know the keys ignores them, and every session then
// dials its data link: an old DP grants nothing, an old server asks for
// nothing.
const (
	wireTCP   = "tcp"   // an IS control link of the TCP transport
	wireData  = "data"  // an IS data link, for the session of its Token
	wireSpare = "spare" // an IS spare data link, for its control link's next session

	defaultSpares    = 2 // spares a server keeps per control link (ListenConfig.Spares)
	maxSparesPerLink = 4 // spares a DP holds for one control link at most
)

// dataWaiter is an open waiting for its data link.
type dataWaiter struct {
	name string
	mu   sync.Mutex    // guards done, and makes a data link's hand-over and the open's giving up one at a time
	done bool          // the open has its data link, or gave up
	ch   chan net.Conn // cap 1: the data link, or nil if it came and failed
}

// dataLink is a server's control link at the DP on the TCP transport, with
// the data links that come to it: the spares it keeps here, and those its
// server dials for a session (as frp's control keeps its work
// connections). The DP finds it by its token (DiscoverPoint.tcpLinks).
type dataLink struct {
	s     *mux.Session
	dp    *DiscoverPoint
	name  string // the server's, for messages
	owner string // the server's, for MaxLinksPerOwner
	token string // what its spares present, and the prefix of its sessions' data-link tokens
	max   int    // spares it may keep; 0: its server keeps none

	mu    sync.Mutex             // guards idle, held, ended, waits and every idle spare's state
	idle  []*spare               // ready for a session, oldest first
	held  int                    // idle spares and spares in their handshake
	ended bool                   // the control link has ended: no more spares
	waits map[string]*dataWaiter // opens waiting for the data link dialled for them, by its token
}

// newDataLink makes the DP's side of a TCP control link whose server asked
// to keep asked spares, granting at most maxSparesPerLink.
func (dp *DiscoverPoint) newDataLink(s *mux.Session, name, owner string, asked int) *dataLink {
	l := &dataLink{s: s, dp: dp, name: name, owner: owner, max: max(0, min(asked, maxSparesPerLink)), token: newToken()}
	dp.mu.Lock()
	if dp.tcpLinks == nil {
		dp.tcpLinks = make(map[string]*dataLink)
	}
	dp.tcpLinks[l.token] = l
	dp.mu.Unlock()
	return l
}

// tcpLink returns the control link whose token begins token (a spare's
// token is the link's; a dialled data link's is the link's, a dot and its
// own), or nil.
func (dp *DiscoverPoint) tcpLink(token string) *dataLink {
	link, _, _ := strings.Cut(token, ".")
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.tcpLinks[link]
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (l *dataLink) Done() <-chan struct{} { return l.s.Done() }

// Close closes the control link; its spares end with it (end).
func (l *dataLink) Close() error { return l.s.Close() }

// Open opens a session on the oldest idle spare, or, with none left that
// works, on a data link dialled for it.
func (l *dataLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	for sp := l.takeSpare(); sp != nil; sp = l.takeSpare() {
		// The server answers a spare's Connect at once, so a spare that
		// says nothing for many round trips died without a FIN (a NAT
		// that forgot it, a host gone): try the next, or dial, rather
		// than fail the session after HandshakeTimeout.
		spareCtx, cancel := context.WithTimeout(ctx, max(spareAnswerMin, 8*l.s.RTT()))
		c, err := sp.open(spareCtx, name, addr, l.dp.HandshakeTimeout)
		cancel()
		if err == nil || errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return c, err
		}
		// The spare ended under the Connect, or never answered: the
		// server never saw it.
	}
	return l.openDialled(ctx, name, addr)
}

// spareAnswerMin is the least time an open waits for a spare's answer.
const spareAnswerMin = time.Second

// openDialled asks the server over the control link to dial a data link
// for this session, and waits for it.
func (l *dataLink) openDialled(ctx context.Context, name, addr string) (net.Conn, error) {
	token := l.token + "." + newToken()
	w := &dataWaiter{name: name, ch: make(chan net.Conn, 1)}
	l.mu.Lock()
	if l.waits == nil {
		l.waits = make(map[string]*dataWaiter)
	}
	l.waits[token] = w
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waits, token)
		l.mu.Unlock()
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
		select {
		case c := <-w.ch: // arrived after we gave up
			if c != nil {
				c.Close()
			}
		default:
		}
	}()

	st, err := l.s.OpenExt(ctx, name, addr, token, directOf(ctx).ext())
	if err != nil {
		return nil, err
	}
	// The server acknowledges the Connect at once, in the order of the
	// Connects (Plan5's Acks carry no token), and then dials: a server
	// that cannot dial its data link ends the control stream X with
	// Close and the reason (mux.DrainReason if it is closing). (A server
	// before that acknowledged once its data link was up, and closed X
	// cleanly: a clean end means nothing.) X carries no bytes.
	ended := make(chan error, 1)
	go func() {
		err := st.WaitRead()
		if err == nil {
			if _, err = st.Read(make([]byte, 1)); err == nil {
				err = errors.New("rtcp: the server sent bytes on a data-link request, which carries none")
			}
		}
		ended <- err
	}()
	defer func() {
		st.Close()
		if ended != nil {
			<-ended // Close ends its wait
		}
	}()
	for {
		select {
		case c := <-w.ch:
			if c == nil {
				// A link failure, so the DP tries the name's other links.
				return nil, errors.New("rtcp: the server's data link for this session failed its handshake with the DP")
			}
			return c, nil
		case err := <-ended:
			ended = nil
			var ae *mux.AbortError
			if errors.As(err, &ae) {
				// The server's reason: a refusal of this session.
				return nil, &mux.RefusedError{Reason: ae.Reason}
			}
			if err != io.EOF {
				// The control link failed under the open, or the server
				// broke the protocol: a link failure, so the DP tries
				// the name's other links.
				st.Abort(err)
				return nil, err
			}
		case <-ctx.Done():
			return nil, errors.New("rtcp: the server acknowledged a session but its data link did not arrive")
		}
	}
}

// end ends the link's spares, idle or in their handshake, with the
// control link.
func (l *dataLink) end() {
	l.dp.mu.Lock()
	delete(l.dp.tcpLinks, l.token)
	l.dp.mu.Unlock()
	l.mu.Lock()
	l.ended = true
	idle := l.idle
	l.idle = nil
	for _, sp := range idle {
		sp.state = spareDropped
	}
	l.held -= len(idle)
	l.mu.Unlock()
	l.dp.countSpares(l.owner, -len(idle))
	for _, sp := range idle {
		sp.c.Close()
	}
}

// reserve makes room for one more spare, or says which bound refuses it.
// Each reservation ends with park or unreserve.
func (l *dataLink) reserve() error {
	dp := l.dp
	dp.mu.Lock()
	if n := dp.counts.spares[l.owner]; n >= dp.MaxLinksPerOwner {
		dp.mu.Unlock()
		return &limitError{refusedMaxLinks, fmt.Sprintf(
			"rtcp: server %q already keeps %d spare data links at this DP, the limit for one server (MaxLinksPerOwner); use fewer Spares or a smaller PoolSize", l.name, n)}
	}
	dp.countSparesLocked(l.owner, 1)
	dp.mu.Unlock()
	l.mu.Lock()
	full := l.ended || l.held >= l.max
	if !full {
		l.held++
	}
	l.mu.Unlock()
	if full {
		dp.countSpares(l.owner, -1)
		return fmt.Errorf("rtcp: this control link keeps its %d spare data links here already, or has ended", l.max)
	}
	return nil
}

func (l *dataLink) unreserve() {
	l.mu.Lock()
	l.held--
	l.mu.Unlock()
	l.dp.countSpares(l.owner, -1)
}

// park makes a reserved spare idle, ready for a session; false if the
// control link ended meanwhile (the reservation is then undone).
func (l *dataLink) park(sp *spare) bool {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		l.unreserve()
		return false
	}
	sp.state = spareIdle
	l.idle = append(l.idle, sp)
	l.mu.Unlock()
	return true
}

// takeSpare takes the oldest idle spare for a session, or returns nil.
// Taking the oldest keeps every spare in use, so none sits idle for long.
func (l *dataLink) takeSpare() *spare {
	l.mu.Lock()
	if len(l.idle) == 0 {
		l.mu.Unlock()
		return nil
	}
	sp := l.idle[0]
	l.idle = slices.Delete(l.idle, 0, 1)
	l.held--
	sp.state = spareTaken
	l.mu.Unlock()
	l.dp.countSpares(l.owner, -1)
	return sp
}

// leave reports what became of sp when its read ended: if it was still
// idle, it leaves the pool.
func (l *dataLink) leave(sp *spare) spareState {
	l.mu.Lock()
	st := sp.state
	if st == spareIdle {
		l.idle = slices.DeleteFunc(l.idle, func(x *spare) bool { return x == sp })
		l.held--
		sp.state = spareDropped
	}
	l.mu.Unlock()
	if st == spareIdle {
		l.dp.countSpares(l.owner, -1)
	}
	return st
}

// spare is a spare data link at the DP.
type spare struct {
	c      net.Conn
	state  spareState       // guarded by its dataLink's mu
	answer chan spareAnswer // cap 1: the server's answer to the Connect, once taken
}

type spareState int

const (
	spareReserved spareState = iota // in its handshake
	spareIdle                       // ready for a session
	spareTaken                      // a session's Connect is on it
	spareDropped                    // ended before a session took it
)

// spareAnswer is the session a spare carries, or why it does not.
type spareAnswer struct {
	conn net.Conn
	err  error
}

// open writes the session's Connect on the spare and waits for the
// server's answer, which serveSpare reads.
func (sp *spare) open(ctx context.Context, name, addr string, timeout time.Duration) (net.Conn, error) {
	if err := plan5link.WriteMessage(sp.c, directOf(ctx).connect(name, addr), timeout); err != nil {
		sp.c.Close()
		<-sp.answer // serveSpare's read fails now
		return nil, err
	}
	select {
	case a := <-sp.answer:
		return a.conn, a.err
	case <-ctx.Done():
		sp.c.Close()
		if a := <-sp.answer; a.conn != nil {
			a.conn.Close() // the answer came as we gave up
		}
		return nil, ctx.Err()
	}
}

// serveSpare keeps a server's spare data link ready for a session of its
// control link and reads it meanwhile: the server sends nothing on an idle
// spare, so the read ends when the spare does (the DP notices at once), or
// with the server's answer to a Connect that an open wrote on it. It
// reports whether it kept c.
func (dp *DiscoverPoint) serveSpare(c net.Conn, r *plan5.Reader, a *plan5.Aloha) bool {
	l := dp.tcpLink(a.Token)
	if l == nil || l.max == 0 || l.token != a.Token {
		dp.refuseToken(c, a, "rtcp: unknown spare-link token; the control link it was for is gone")
		return false
	}
	if r.Buffered().Buffered() > 0 {
		dp.refuse(c, "rtcp: a data link must wait for the DP's Aloha before it sends")
		return false
	}
	if err := l.reserve(); err != nil {
		var le *limitError
		if errors.As(err, &le) {
			dp.refuseLink(c, l.name, err)
		} else {
			dp.refuse(c, err.Error())
		}
		return false
	}
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: dp.Name, Transport: wireSpare}
	if err := plan5link.WriteMessage(c, ours, dp.HandshakeTimeout); err != nil {
		l.unreserve()
		return false
	}
	c.SetDeadline(time.Time{})
	sp := &spare{c: c, answer: make(chan spareAnswer, 1)}
	if !l.park(sp) {
		return false
	}
	ack, err := readAck(c)
	if l.leave(sp) != spareTaken {
		if err == nil {
			dp.log().Info("rtcp: a server sent on an idle spare data link; dropped", "name", l.name, "remote", c.RemoteAddr())
		}
		return false
	}
	if err == nil && ack.X < 0 {
		err = &mux.RefusedError{Reason: ack.R}
	}
	if err != nil {
		sp.answer <- spareAnswer{err: err}
		return false
	}
	sp.answer <- spareAnswer{conn: dp.keepData(c)}
	return true
}

// readAck reads the server's answer to a Connect on a spare without
// reading a byte past it: the session's first bytes may follow in the same
// segment, and they must stay on the socket for the relay to splice. Each
// read asks for the fewest bytes the message must still hold (a type line,
// then a JSON object and a newline), so the usual 2\n{"X":1}\n takes four
// reads rather than ten.
func readAck(c net.Conn) (*plan5.Ack, error) {
	b := make([]byte, 0, 64)
	need := len("2\n{}\n")
	for bytes.Count(b, []byte{'\n'}) < 2 {
		if len(b)+need > plan5.PlainMaxLine {
			return nil, errors.New("rtcp: the server's answer on a spare data link is too long")
		}
		n := len(b)
		b = append(b, make([]byte, need)...)
		if _, err := io.ReadFull(c, b[n:]); err != nil {
			return nil, err
		}
		switch last := b[len(b)-1]; {
		case last == '\n':
			need = len("{}\n") // the type line ended
		case last == '}', last == ' ', last == '\t', last == '\r':
			need = 1
		default:
			need = len("}\n")
		}
	}
	m, err := plan5.NewReader(bytes.NewReader(b), plan5.PlainMaxLine).ReadMessage()
	if err != nil {
		return nil, err
	}
	ack, ok := m.(*plan5.Ack)
	if !ok {
		return nil, fmt.Errorf("rtcp: server answered a session on a spare data link with %v, want Ack", m.Type())
	}
	return ack, nil
}

// serveData takes a server's data link for the open waiting for its token.
// It reports whether it kept c.
func (dp *DiscoverPoint) serveData(c net.Conn, r *plan5.Reader, a *plan5.Aloha) bool {
	var w *dataWaiter
	if l := dp.tcpLink(a.Token); l != nil {
		l.mu.Lock()
		w = l.waits[a.Token]
		delete(l.waits, a.Token)
		l.mu.Unlock()
	}
	if w == nil {
		dp.refuseToken(c, a, "rtcp: unknown or expired data-link token; the session it was for is gone")
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		dp.refuse(c, "rtcp: the session this data link was for has given up")
		return false
	}
	if r.Buffered().Buffered() > 0 {
		dp.refuse(c, "rtcp: a data link must wait for the DP's Aloha before it sends")
		w.ch <- nil // the open fails now, not at its timeout
		return false
	}
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: dp.Name, Transport: wireData}
	if err := plan5link.WriteMessage(c, ours, dp.HandshakeTimeout); err != nil {
		w.ch <- nil
		return false
	}
	c.SetDeadline(time.Time{})
	w.ch <- dp.keepData(c)
	return true
}

// keepData makes c, a data link that the group tracks, the server's side
// of a session: it leaves the DP's books when closed.
func (dp *DiscoverPoint) keepData(c net.Conn) net.Conn {
	release := func() { dp.g.Release(netConn(c)) }
	if tc := tcpreset.Of(c); tc != nil {
		// As for a raw client: until the session ends cleanly (the relay
		// then undoes this), any end of the data link, the DP dying
		// included, is a reset, so the server never takes a cut for an end.
		tcpreset.SetReset(tc, true)
		return &dataConn{TCPConn: tc, conn: c, release: release}
	}
	tcpreset.SetReset(tcpreset.Under(c), true) // the TCP connection under TLS
	return &releaseConn{Conn: c, release: release}
}

// dataConn is a data link at the DP: a TCP connection that leaves the DP's
// books when closed. The relay splices its TCPConn.
type dataConn struct {
	*net.TCPConn
	conn    net.Conn // what the listener gave: a door's connection gives its place back on Close
	once    sync.Once
	release func()
}

// Unwrap gives the relay the TCP connection to splice.
func (c *dataConn) Unwrap() *net.TCPConn { return c.TCPConn }

// RawTCP lets internal/sockio read and write the TCPConn itself: c's Read
// and Write are its.
func (c *dataConn) RawTCP() *net.TCPConn { return c.TCPConn }

func (c *dataConn) Close() error {
	err := c.conn.Close()
	c.once.Do(c.release)
	return err
}

// releaseConn is dataConn for a connection that is not TCP.
type releaseConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releaseConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SetReset sets whether the TCP connection under the data link (TLS)
// ends with a reset: keepData sets it, the relay clears it for a
// session that ends cleanly, which it cannot see through releaseConn.
func (c *releaseConn) SetReset(on bool) {
	tcpreset.SetReset(tcpreset.Under(c.Conn), on)
}

// Abort cuts the session as the relay cuts a side (relay.CutOff): the
// data link's own Abort, or that of the connection under its TLS (a
// WebSocket), or a reset of the TCP connection under it with no TLS
// goodbye first.
func (c *releaseConn) Abort(err error) {
	relay.CutOff(c.Conn, err)
	c.once.Do(c.release)
}

func (c *releaseConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoHalfClose
}

// dialData is the server's side of a data link: dial the DP and present
// token, for a session (transport wireData) or as a spare (wireSpare). r
// holds what came after the DP's Aloha.
func (l *Listener) dialData(ctx context.Context, transport, token string) (c net.Conn, r *plan5.Reader, err error) {
	c, err = dialDP(ctx, l.cfg.Dial, l.cfg.TLSConfig, l.dp)
	if err != nil {
		return nil, nil, err
	}
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: l.addr.Name, Owner: l.cfg.Owner,
		Transport: transport, Token: token}
	r = plan5.NewReader(c, plan5.PlainMaxLine)
	theirs, err := exchangeAloha(c, r, ours, l.dp, nil, nil, nil)
	if err == nil && theirs.Transport != transport {
		err = fmt.Errorf("rtcp: the DP answered a data link with transport %q", theirs.Transport)
	}
	if err == nil {
		err = stop()
	} else {
		stop()
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, r, nil
}

// acceptData completes an open on a control link of the TCP transport,
// which the accept loop has acknowledged: dial the data link, and end
// the control stream, with the reason if the dial failed.
func (l *Listener) acceptData(st *mux.Stream) (*Conn, error) {
	if l.cfg.ManualAck {
		return l.lateData(st), nil
	}
	defer st.Close()
	dc, err := l.dialDataFor(st)
	if err != nil {
		return nil, err
	}
	return newConn(&rawConn{Conn: dc, local: st.LocalAddr(), remote: st.RemoteAddr()}, nil), nil
}

// dialDataFor dials the data link of the open st, or ends st with the
// reason it could not.
func (l *Listener) dialDataFor(st *mux.Stream) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, defaultHandshakeTimeout)
	defer cancel()
	c, r, err := l.dialData(ctx, wireData, st.Token())
	if err != nil {
		if l.ctx.Err() != nil {
			// The listener is closing: the DP takes the session to
			// another link of the name, if it has one.
			st.Abort(errors.New(mux.DrainReason))
			return nil, net.ErrClosed
		}
		err = fmt.Errorf("rtcp: the server could not open a data link to the DP: %v", err)
		st.Abort(err)
		return nil, err
	}
	dc := afterHandshake(c, r.Buffered())
	resetOnDeath(dc)
	return dc, nil
}

// lateData hands out the session of the open st before its data link is
// dialled (ListenConfig.ManualAck): the application's accepting it dials
// the link, as acceptData does at once, and its refusal ends the control
// stream with the reason, as a failed dial does. A refused session costs
// no connection to the DP, and an accepted one the same crossings.
func (l *Listener) lateData(st *mux.Stream) *Conn {
	lc := new(lateConn)
	return newPendingConn(&rawConn{Conn: lc, local: st.LocalAddr(), remote: st.RemoteAddr()}, func(refusal error) error {
		defer st.Close()
		if refusal != nil {
			st.Abort(refusal)
			return nil
		}
		dc, err := l.dialDataFor(st)
		if err != nil {
			return err
		}
		lc.up(dc)
		return nil
	})
}

// lateConn is a data link that is dialled after its session was handed
// out (lateData). Until it is up, reads and writes fail (a Conn answers
// its session, and so dials, before its first I/O), and deadlines are
// kept for it.
type lateConn struct {
	mu     sync.Mutex // guards c, rd, wd and closed
	c      net.Conn   // nil until up
	rd, wd time.Time
	closed bool
}

func (x *lateConn) up(c net.Conn) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		c.Close()
		return
	}
	c.SetReadDeadline(x.rd)
	c.SetWriteDeadline(x.wd)
	x.c = c
}

// conn returns the data link, or nil before it is up.
func (x *lateConn) conn() net.Conn {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.c
}

// NetConn returns the data link, or nil before it is up: the socket whose
// end tcpreset.Under finds.
func (x *lateConn) NetConn() net.Conn { return x.conn() }

func (x *lateConn) Read(p []byte) (int, error) {
	if c := x.conn(); c != nil {
		return c.Read(p)
	}
	return 0, net.ErrClosed
}

func (x *lateConn) Write(p []byte) (int, error) {
	if c := x.conn(); c != nil {
		return c.Write(p)
	}
	return 0, net.ErrClosed
}

func (x *lateConn) CloseWrite() error {
	if cw, ok := x.conn().(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoHalfClose
}

func (x *lateConn) Close() error {
	x.mu.Lock()
	x.closed = true
	c := x.c
	x.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// LocalAddr and RemoteAddr are the rawConn's, which wraps a lateConn.
func (x *lateConn) LocalAddr() net.Addr  { return nil }
func (x *lateConn) RemoteAddr() net.Addr { return nil }

func (x *lateConn) SetDeadline(t time.Time) error {
	x.SetReadDeadline(t)
	return x.SetWriteDeadline(t)
}

func (x *lateConn) SetReadDeadline(t time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.rd = t
	if x.c != nil {
		return x.c.SetReadDeadline(t)
	}
	return nil
}

func (x *lateConn) SetWriteDeadline(t time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.wd = t
	if x.c != nil {
		return x.c.SetWriteDeadline(t)
	}
	return nil
}

// sparePool keeps a control link's spare data links at the DP: n slots,
// each with a spare dialled and waiting for a Connect, dialled again once
// its spare carries a session.
type sparePool struct {
	token string          // the DP's, for this control link
	n     int             // spares the DP granted
	done  <-chan struct{} // the control link's end

	ctx    context.Context // ends with the control link or the listener
	cancel context.CancelFunc

	direct *linkDirect // the control link's (ListenConfig.Direct), or nil

	mu      sync.Mutex // guards idle and stopped
	idle    map[net.Conn]struct{}
	stopped bool
}

// newSparePool returns the pool of a control link whose DP answered
// theirs to our offer of asked spares, or nil if it keeps none.
func newSparePool(asked int, theirs *plan5.Aloha, done <-chan struct{}) *sparePool {
	n := min(asked, theirs.Spares)
	if n <= 0 || theirs.Token == "" {
		return nil
	}
	return &sparePool{token: theirs.Token, n: n, done: done, idle: make(map[net.Conn]struct{})}
}

// start runs the pool's slots until stop; l's Close waits for them.
func (p *sparePool) start(l *Listener) {
	p.ctx, p.cancel = context.WithCancel(l.ctx)
	l.wg.Add(p.n)
	for range p.n {
		go l.keepSpare(p)
	}
}

// stop closes the idle spares and ends the slots; sessions already handed
// out go on. p may be nil or not started.
func (p *sparePool) stop() {
	if p == nil {
		return
	}
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Lock()
	p.stopped = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for c := range idle {
		c.Close()
	}
}

// ended reports whether the pool's control link or listener has ended.
func (p *sparePool) ended() bool {
	select {
	case <-p.done:
		return true
	case <-p.ctx.Done():
		return true
	default:
		return false
	}
}

// keepSpare keeps one slot of p filled until p stops.
func (l *Listener) keepSpare(p *sparePool) {
	defer l.wg.Done()
	lost := 0 // spares in a row that ended without a session
	for !p.ended() {
		if lost > 0 && backoff.Sleep(p.ctx, backoff.Delay(lost, l.cfg.MinBackoff, l.cfg.MaxBackoff)) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, defaultHandshakeTimeout)
		c, r, err := l.dialData(ctx, wireSpare, p.token)
		cancel()
		if err == nil {
			var conn *Conn
			if conn, err = l.waitSpare(p, c, r); err == nil {
				lost = 0
				l.wg.Add(1)
				go l.handOver(conn)
				continue
			}
			c.Close()
		}
		if p.ended() {
			return // not lost: stopped
		}
		lost++
		if lost == 1 {
			l.log().Warn("rtcp: lost a spare data link to the DP; sessions dial their own until it is back", "name", l.addr.Name, "dp", l.dp, "err", err)
		}
	}
}

// waitSpare waits on a spare for the DP's Connect and accepts the session.
func (l *Listener) waitSpare(p *sparePool, c net.Conn, r *plan5.Reader) (*Conn, error) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil, net.ErrClosed
	}
	p.idle[c] = struct{}{}
	p.mu.Unlock()
	m, err := r.ReadMessage()
	p.mu.Lock()
	delete(p.idle, c)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	cm, ok := m.(*plan5.Connect)
	if !ok {
		return nil, fmt.Errorf("rtcp: the DP sent %v on a spare data link, want Connect", m.Type())
	}
	select {
	case <-l.closed:
		// The reason that makes the DP try the name's other links.
		plan5link.WriteMessage(c, &plan5.Ack{X: -1, R: mux.DrainReason}, time.Second)
		return nil, net.ErrClosed
	default:
	}
	// The answer goes on the spare: Ack, or Ack X=-1 and the reason (after
	// which the Conn closes c, with a FIN: a reset could destroy the
	// answer before the DP reads it).
	ack := func(refusal error) error {
		m := &plan5.Ack{X: 1}
		if refusal != nil {
			m = &plan5.Ack{X: -1, R: refusal.Error()}
		}
		return plan5link.WriteMessage(c, m, defaultHandshakeTimeout)
	}
	remote := &Addr{Name: cm.N, Addr: cm.Addr}
	if remote.Addr == "" {
		remote.Addr = l.dp
	}
	rc := &rawConn{Conn: afterHandshake(c, r.Buffered()), local: l.addr, remote: remote}
	if l.cfg.ManualAck {
		return p.direct.wrap(newPendingConn(rc, func(refusal error) error {
			if err := ack(refusal); err != nil || refusal != nil {
				return err
			}
			resetOnDeath(c)
			return nil
		}), cm), nil
	}
	if err := ack(nil); err != nil {
		return nil, err
	}
	resetOnDeath(c)
	return p.direct.wrap(newConn(rc, nil), cm), nil
}

// handOver gives Accept a session that came on a spare.
func (l *Listener) handOver(c *Conn) {
	defer l.wg.Done()
	select {
	case l.accept <- c:
	case <-l.closed:
		c.Close()
	}
}
