package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/sockio"
	"rtcp/internal/tcpreset"
	"rtcp/internal/yamuxlink"
	"rtcp/protocol/plan5"
)

// Transport names on the wire (the Aloha's Transport extension).
const (
	wireYamux = "yamux" // IS link: a yamux session after the Aloha
	wireRaw   = "raw"   // client connection: raw bytes after the Ack
)

// A yamux stream's receive window starts at yamux's own 256 KiB and grows
// to mux.DefaultMaxWindow while the round trip rather than the reader
// holds the peer back (internal/mux, flow.go): a fixed window of w caps a
// stream at w per round trip (4 MiB: 40 MB/s at 100 ms), and a large
// fixed one makes every stalled reader cost that much.

// yamuxMaxStreams caps the sessions one yamux link carries at once.
const yamuxMaxStreams = 8192

// The yamux transport speaks the yamux wire (hashicorp/yamux's spec.md)
// with rtcp's own session layer, internal/mux, through the yamux Framer
// of internal/yamuxlink: the same flow control, half-close, deadlines,
// errors and fast paths as the JSON transport, and a real per-stream
// reset (RST) for Abort. hashicorp/yamux is the reference peer in the
// tests (internal/yamuxlink). We dropped it from the relay path because
// every Stream.Write goes through its send goroutine and every frame
// through a second wake-up on the receiving side: measured with rtcp
// bench, that kept the yamux transport at 0.6-0.7 of the two-relay limit
// and its echo at 2.4x the limit's (README, Performance).

// newYamuxSession starts the yamux session of a link after its Aloha
// exchange, read with r: the DP is yamux's client (it opens the streams),
// the server its server.
func newYamuxSession(c net.Conn, r *plan5.Reader, ir *mux.IdleReader, client bool, name string, fc flowConfig, log *slog.Logger) *mux.Session {
	cfg := yamuxlink.Config(0) // yamux's 256 KiB, growing
	cfg.MaxWindow = mux.DefaultMaxWindow
	cfg.Name = name
	fc.apply(&cfg, log)
	if client {
		cfg.AcceptBacklog = -1 // a server opens nothing toward the DP
	}
	// The Framer reads the IdleReader under r, unless r holds bytes read
	// past the handshake: then r, which reads the IdleReader once they are
	// gone. Without a buffer in between, the Framer can read a frame's
	// header alone and leave a long frame's bytes on the socket (SplitData).
	var src io.Reader = ir
	if r.Buffered().Buffered() > 0 {
		src = r.Buffered()
	}
	fr := yamuxlink.NewFramer(src, c, cfg.MaxWindow, client)
	fr.SplitData() // src reads c
	return mux.New(c, fr, cfg)
}

// startYamuxKeepAlive starts a yamux link's pings and arms its
// IdleReader once its handshake is over: each ping is answered, so a live
// peer is never quiet for twice the period.
func startYamuxKeepAlive(ir *mux.IdleReader, s *mux.Session, period time.Duration) {
	s.SetIdleReader(ir)
	if period > 0 {
		s.SetKeepAlive(period)
		ir.SetIdleTimeout(2 * period)
	}
}

// bufferedConn is a net.Conn whose first reads come from a reader that
// buffered past a handshake.
type bufferedConn struct {
	net.Conn
	ahead *bytes.Reader // the bytes buffered, read first
	r     io.Reader     // ahead, then Conn's (through internal/sockio)
	w     io.Writer     // writes Conn (through internal/sockio)
	taken atomic.Bool   // takeAhead took what was left of ahead: c reads Conn alone
}

// newBufferedConn returns c whose first reads return buffered.
func newBufferedConn(c net.Conn, buffered []byte) *bufferedConn {
	ahead := bytes.NewReader(buffered)
	return &bufferedConn{
		Conn:  c,
		ahead: ahead,
		r:     io.MultiReader(ahead, sockio.ReaderOf(c)),
		w:     sockio.WriterOf(c),
	}
}

func (c *bufferedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *bufferedConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// takeAhead returns the buffered bytes that no Read has returned yet
// (nil if none), which the caller must deliver before the rest, and reads Conn alone
// from then on (Conn.Unwrap then sees Conn). Not concurrently with Read.
func (c *bufferedConn) takeAhead() []byte {
	var rest []byte
	if c.ahead.Len() > 0 {
		rest = make([]byte, c.ahead.Len())
		c.ahead.Read(rest)
	}
	c.r = sockio.ReaderOf(c.Conn)
	c.taken.Store(true)
	return rest
}

// TakeBuffered hands a relay the buffered bytes that no Read has
// returned (relay.Buffered: Join takes them before it reads, and writes
// them first); from then on c reads Conn alone, and Unwrap gives the TCP
// connection under it, whose bytes are then c's. nil if taken before.
// Not concurrently with Read.
func (c *bufferedConn) TakeBuffered() []byte {
	if c.taken.Load() {
		return nil
	}
	return c.takeAhead()
}

// Unwrap returns the TCP connection that carries c's bytes as they are
// (tcpreset.Of) once its buffered bytes are taken (TakeBuffered), else
// nil: a relay then moves the rest itself, as between any two TCP
// connections (a client's raw leg at the DP, a TLS passthrough's).
func (c *bufferedConn) Unwrap() *net.TCPConn {
	if !c.taken.Load() {
		return nil
	}
	return tcpreset.Of(c.Conn)
}

// NetConn returns the connection under c (a raw leg's TCP or TLS
// connection, never a stream), whose socket tcpreset.Under finds. Its
// bytes are not c's: the relay never moves them itself (relay.Carrier).
func (c *bufferedConn) NetConn() net.Conn { return c.Conn }

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoHalfClose
}

// afterHandshake returns c, or c behind br when br holds bytes already
// read from c.
func afterHandshake(c net.Conn, br *bufio.Reader) net.Conn {
	if br.Buffered() == 0 {
		return c
	}
	return newBufferedConn(c, peekAll(br))
}

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// ErrWriteClosed is returned by Write after CloseWrite.
var ErrWriteClosed = mux.ErrWriteClosed

// yamuxLink is a server's link at the DP on the yamux transport. The DP
// opens one stream per session and runs the Plan5 Connect/Ack exchange at
// its start, so the server can refuse it with a reason.
type yamuxLink struct {
	s       *mux.Session
	pending chan struct{} // semaphore of opens waiting for their Ack
}

func newYamuxLink(s *mux.Session) *yamuxLink {
	return &yamuxLink{s: s, pending: make(chan struct{}, 1024)}
}

func (l *yamuxLink) Done() <-chan struct{} { return l.s.Done() }
func (l *yamuxLink) Close() error          { return l.s.Close() }

func (l *yamuxLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	select {
	case l.pending <- struct{}{}:
		defer func() { <-l.pending }()
	default:
		return nil, errors.New("rtcp: too many sessions are being opened to this server; retry later")
	}
	st, err := l.s.Open(ctx, "", "")
	if err != nil {
		return nil, err
	}
	// Connect and Ack in their usual forms are coded without encoding/json
	// (plan5's fast paths), so this goroutine's stack, which relays the
	// session for its whole life, stays small: an idle yamux session once
	// cost the DP 12 KB of stacks against 6 KB on the JSON transport.
	if err := connectStream(ctx, st, name, addr); err != nil {
		if errors.Is(err, ErrRefused) {
			st.Close()
		} else {
			st.Abort(err)
		}
		return nil, err
	}
	return st, nil
}

// connectStream runs the DP's side of a yamux stream's handshake: Connect
// out, Ack back.
func connectStream(ctx context.Context, c net.Conn, name, addr string) (err error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
		defer c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer func() {
		if !stop() && err == nil {
			// ctx ended as the exchange did: its callback may be setting
			// a past deadline on c right now, so c cannot be handed on.
			err = ctx.Err()
		}
	}()
	if _, err := c.Write(plan5.AppendMessage(nil, directOf(ctx).connect(name, addr))); err != nil {
		return err
	}
	// The server answers with one Ack and sends nothing more until the
	// client's bytes arrive, so reading it byte by byte loses nothing.
	r := plan5.NewReader(byteReader{c}, plan5.PlainMaxLine)
	m, err := r.ReadMessage()
	if err != nil {
		return err
	}
	ack, ok := m.(*plan5.Ack)
	if !ok {
		return fmt.Errorf("rtcp: server answered a session with %v, want Ack", m.Type())
	}
	if ack.X < 0 {
		return &mux.RefusedError{Reason: ack.R}
	}
	return nil
}

// byteReader reads one byte at a time so that a bufio.Reader on top of it
// never takes bytes past the line it needs.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return b.r.Read(p[:1])
}

// yamuxServerLink is a server link of the yamux transport: each stream the
// DP opens starts with a Plan5 Connect, which the server answers with Ack.
// It drains and ends like the JSON transport's link.
type yamuxServerLink struct {
	muxServerLink
	local  net.Addr
	remote func(name, addr string) net.Addr
	manual bool // ListenConfig.ManualAck: the application answers
	// beats: the link has heartbeats (ListenConfig.KeepAlive), which
	// end it if it is too stuck to take an Ack.
	beats bool
}

func (y *yamuxServerLink) accept(ctx context.Context) (*Conn, error) {
	for {
		var st *mux.Stream
		select {
		case st = <-y.s.Streams():
		case <-y.s.Done():
			return nil, y.s.Err()
		case <-ctx.Done():
			return nil, net.ErrClosed
		}
		c, err := y.handshake(st)
		if err != nil {
			st.Close()
			continue // only this session fails
		}
		return c, nil
	}
}

// handshake reads the DP's Connect at the start of st and answers Ack.
// Only the read has a deadline: a stream with a write deadline hands its
// writes to the link's writer goroutine (internal/mux), and the Ack of a
// brokered session then waited while the punch's goroutine, started
// right after it (direct.go), took the core. Without one the Ack goes
// out on this goroutine, before the punch starts, as it does under
// ManualAck; a link too stuck to take it ends (heartbeats), and the
// write with it. A link without heartbeats (KeepAlive negative) never
// ends so: there the Ack keeps its write deadline, and a stuck link
// holds neither Accept nor the listener's Close.
func (y *yamuxServerLink) handshake(st *mux.Stream) (*Conn, error) {
	st.SetReadDeadline(time.Now().Add(defaultHandshakeTimeout))
	// On the link's accept goroutine, one per link: the stack that
	// encoding/json grows here is paid once, not per session.
	r := plan5.NewReader(byteReader{st}, plan5.PlainMaxLine)
	m, err := r.ReadMessage()
	if err != nil {
		return nil, err
	}
	cm, ok := m.(*plan5.Connect)
	if !ok {
		return nil, fmt.Errorf("rtcp: a yamux session must start with Connect, not %v", m.Type())
	}
	if n := y.s.NumStreams(); n > yamuxMaxStreams {
		refuse := fmt.Sprintf("rtcp: the server's link carries %d sessions, its limit; retry later", n-1)
		st.Write(plan5.AppendMessage(nil, &plan5.Ack{X: -1, R: refuse}))
		return nil, errors.New(refuse)
	}
	ack := func(refusal error) error {
		m := &plan5.Ack{X: st.ID()}
		if refusal != nil {
			m = &plan5.Ack{X: -1, R: refusal.Error()}
		}
		_, err := st.Write(plan5.AppendMessage(nil, m))
		return err
	}
	st.SetAddrs(y.local, y.remote(cm.N, cm.Addr))
	st.SetReadDeadline(time.Time{})
	if y.manual {
		return y.direct.wrap(newPendingConn(st, ack), cm), nil
	}
	if !y.beats {
		st.SetWriteDeadline(time.Now().Add(defaultHandshakeTimeout))
	}
	if err := ack(nil); err != nil {
		return nil, err
	}
	st.SetWriteDeadline(time.Time{})
	return y.direct.wrap(newConn(st, nil), cm), nil
}
