package rtcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// The TCP transport (TransportTCP) gives every session a TCP connection of
// its own, a data link, the way rathole does: the server keeps a JSON
// control link, the DP asks over it for a session with a Connect that
// carries a fresh Token, the server dials the DP and presents the token in
// an Aloha with Transport "data", and answers the Connect with Ack once the
// data link is up (or Ack X=-1 with the reason it is not). The DP then
// joins the client's connection and the data link byte for byte: between
// two TCP connections the kernel splices them.
const (
	wireTCP  = "tcp"  // an IS control link of the TCP transport
	wireData = "data" // an IS data link
)

// dataWaiter is an open waiting for its data link.
type dataWaiter struct {
	name string
	mu   sync.Mutex
	done bool
	ch   chan net.Conn // cap 1
}

// dataLink is a server's control link at the DP on the TCP transport.
type dataLink struct {
	s  *mux.Session
	dp *DiscoverPoint
}

func (l dataLink) Done() <-chan struct{} { return l.s.Done() }

func (l dataLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	w := &dataWaiter{name: name, ch: make(chan net.Conn, 1)}
	l.dp.mu.Lock()
	if l.dp.dataWait == nil {
		l.dp.dataWait = make(map[string]*dataWaiter)
	}
	l.dp.dataWait[token] = w
	l.dp.mu.Unlock()
	defer func() {
		l.dp.mu.Lock()
		delete(l.dp.dataWait, token)
		l.dp.mu.Unlock()
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
		select {
		case c := <-w.ch: // arrived after we gave up
			c.Close()
		default:
		}
	}()

	st, err := l.s.OpenToken(ctx, name, addr, token)
	if err != nil {
		return nil, err
	}
	// The control stream has done its work: the server acknowledges only
	// once the DP has answered its data link, which is then on its way.
	st.Close()
	select {
	case c := <-w.ch:
		return c, nil
	case <-ctx.Done():
		return nil, errors.New("rtcp: the server acknowledged a session but its data link did not arrive")
	}
}

// serveData takes a server's data link for the open waiting for its token.
// It reports whether it kept c.
func (dp *DiscoverPoint) serveData(c net.Conn, r *plan5.Reader, a *plan5.Aloha) bool {
	dp.mu.Lock()
	w := dp.dataWait[a.Token]
	delete(dp.dataWait, a.Token)
	dp.mu.Unlock()
	if w == nil {
		dp.refuse(c, "rtcp: unknown or expired data-link token; the session it was for is gone")
		return false
	}
	if r.Buffered().Buffered() > 0 {
		dp.refuse(c, "rtcp: a data link must wait for the DP's Aloha before it sends")
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		dp.refuse(c, "rtcp: the session this data link was for has given up")
		return false
	}
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: dp.Name, Transport: wireData}
	if err := plan5link.WriteMessage(c, ours, dp.HandshakeTimeout); err != nil {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	var dc net.Conn = c
	if ok {
		// As for a raw client: until the session ends cleanly (the relay
		// then undoes this), any end of the data link, the DP dying
		// included, is a reset, so the server never takes a cut for an end.
		tc.SetLinger(0)
		dc = &dataConn{TCPConn: tc, release: func() { dp.g.Release(netConn(c)) }}
	} else {
		dc = &releaseConn{Conn: c, release: func() { dp.g.Release(netConn(c)) }}
	}
	c.SetDeadline(time.Time{})
	w.ch <- dc
	return true
}

// dataConn is a data link at the DP: a TCP connection that leaves the DP's
// books when closed. The relay splices its TCPConn.
type dataConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

// Unwrap gives the relay the TCP connection to splice.
func (c *dataConn) Unwrap() *net.TCPConn { return c.TCPConn }

func (c *dataConn) Close() error {
	err := c.TCPConn.Close()
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

func (c *releaseConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoHalfClose
}

// dialData is the server's side: dial the DP and present token; the
// connection is then the session.
func (l *Listener) dialData(ctx context.Context, token string) (net.Conn, error) {
	c, err := dialDP(ctx, l.cfg.Dial, l.cfg.TLSConfig, l.dp)
	if err != nil {
		return nil, err
	}
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: l.addr.Name, Owner: l.cfg.Owner,
		Transport: wireData, Token: token}
	r := plan5.NewReader(c, plan5.PlainMaxLine)
	theirs, err := exchangeAloha(c, r, ours, l.dp, nil, nil)
	if err == nil && theirs.Transport != wireData {
		err = fmt.Errorf("rtcp: the DP answered a data link with transport %q", theirs.Transport)
	}
	if err == nil {
		err = stop()
	} else {
		stop()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return afterHandshake(c, r.Buffered()), nil
}

// acceptData completes an open on a control link of the TCP transport:
// dial the data link, then acknowledge.
func (l *Listener) acceptData(st *mux.Stream) (*Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, defaultHandshakeTimeout)
	defer cancel()
	dc, err := l.dialData(ctx, st.Token())
	if err != nil {
		st.Ack(fmt.Errorf("rtcp: the server could not open a data link to the DP: %v", err))
		return nil, err
	}
	if err := st.Ack(nil); err != nil {
		dc.Close()
		return nil, err
	}
	st.Close()
	resetOnDeath(dc)
	return newConn(&rawConn{Conn: dc, local: st.LocalAddr(), remote: st.RemoteAddr()}, nil), nil
}
