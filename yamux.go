package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"rtcp/protocol/plan5"
)

// Transport names on the wire (the Aloha's Transport extension).
const (
	wireYamux = "yamux" // IS link: a yamux session after the Aloha
	wireRaw   = "raw"   // client connection: raw bytes after the Ack
)

// yamuxWindow is the largest receive window of a yamux stream. yamux's
// own default (256 KiB) caps a stream at 256 KiB per round trip: 2.5 MB/s
// over a 100 ms link. 4 MiB lets one stream fill 40 MB/s at 100 ms while
// bounding what a stalled reader can make a peer buffer.
const yamuxWindow = 4 << 20

// yamuxMaxStreams caps the sessions one yamux link carries at once.
const yamuxMaxStreams = 8192

// yamuxConfig is yamux's configuration for a relay link: a large stream
// window, a ping every keepAlive (none if it is 0), and logs to logger (or
// nowhere), never stderr. A silent peer is noticed by the IdleReader under
// the session (yamuxOver) at twice keepAlive; yamux's own ping timeout,
// ConnectionWriteTimeout, is only the backstop, kept at 10 s or more so
// that a write slowed by a busy link is not taken for a dead one.
func yamuxConfig(logger *slog.Logger, keepAlive time.Duration) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.MaxStreamWindowSize = yamuxWindow
	cfg.EnableKeepAlive = keepAlive > 0
	if keepAlive > 0 {
		cfg.KeepAliveInterval = keepAlive
	} else {
		cfg.KeepAliveInterval = defaultKeepAlive // unused, but must be valid
	}
	cfg.ConnectionWriteTimeout = max(10*time.Second, keepAlive)
	cfg.AcceptBacklog = 256
	cfg.StreamOpenTimeout = defaultHandshakeTimeout
	cfg.LogOutput = nil
	cfg.Logger = log.New(slogWriter{logger}, "", 0)
	return cfg
}

// slogWriter turns yamux's log lines into slog records.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	if w.l == nil {
		return len(p), nil
	}
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		level = slog.LevelError
	case bytes.Contains(p, []byte("[WARN]")):
		level = slog.LevelWarn
	}
	w.l.Log(context.Background(), level, msg, "component", "yamux")
	return len(p), nil
}

// bufferedConn is a net.Conn whose first reads come from a reader that
// buffered past a handshake.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
	return &bufferedConn{Conn: c, r: io.MultiReader(bytes.NewReader(peekAll(br)), c)}
}

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// yamuxConn makes a *yamux.Stream a full net.Conn. A raw stream is not one:
// it ignores a past write deadline while window is free, its Close is only
// a half-close, and it reports the end of its session as io.EOF.
type yamuxConn struct {
	s             *yamux.Stream
	local, remote net.Addr
	closed        atomic.Bool
	rdl, wdl      atomic.Pointer[time.Time]
	once          sync.Once
	onClose       func()
}

func newYamuxConn(s *yamux.Stream, local, remote net.Addr, onClose func()) *yamuxConn {
	return &yamuxConn{s: s, local: local, remote: remote, onClose: onClose}
}

func (c *yamuxConn) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "rtcp", Source: c.local, Addr: c.remote, Err: err}
}

func passed(p *atomic.Pointer[time.Time]) bool {
	t := p.Load()
	return t != nil && !t.IsZero() && !time.Now().Before(*t)
}

// errLinkLost is what a session cut off by the end of its yamux link
// reports instead of yamux's io.EOF.
var errLinkLost = errors.New("rtcp: link lost: the DP or the server went away")

func (c *yamuxConn) mapErr(err error) error {
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case errors.Is(err, yamux.ErrTimeout):
		return os.ErrDeadlineExceeded
	case errors.Is(err, yamux.ErrConnectionReset):
		return errors.New("rtcp: session reset by the peer")
	case errors.Is(err, yamux.ErrSessionShutdown), c.s.Session().IsClosed():
		// A stream of a dead link fails with ErrStreamClosed too: not
		// the caller's CloseWrite.
		return errLinkLost
	case errors.Is(err, yamux.ErrStreamClosed):
		return ErrWriteClosed
	}
	return err
}

// ErrWriteClosed is returned by Write after CloseWrite.
var ErrWriteClosed = errors.New("rtcp: write after CloseWrite")

func (c *yamuxConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opErr("read", net.ErrClosed)
	}
	if passed(&c.rdl) {
		return 0, c.opErr("read", os.ErrDeadlineExceeded)
	}
	n, err := c.s.Read(p)
	if err == io.EOF {
		if c.closed.Load() {
			return n, c.opErr("read", net.ErrClosed)
		}
		if c.s.Session().IsClosed() {
			// yamux ends every stream with io.EOF when its link dies; a
			// session cut off must not look complete.
			return n, c.opErr("read", errLinkLost)
		}
		return n, io.EOF
	}
	if err != nil {
		return n, c.opErr("read", c.mapErr(err))
	}
	return n, nil
}

func (c *yamuxConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opErr("write", net.ErrClosed)
	}
	if passed(&c.wdl) {
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	n, err := c.s.Write(p)
	if err != nil {
		return n, c.opErr("write", c.mapErr(err))
	}
	return n, nil
}

// CloseWrite sends the stream's FIN: the peer reads io.EOF.
func (c *yamuxConn) CloseWrite() error {
	if c.closed.Load() {
		return c.opErr("close", net.ErrClosed)
	}
	return c.s.Close()
}

// Close is a full close: it unblocks every call and fails later ones.
func (c *yamuxConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		past := aLongTimeAgo
		c.s.SetDeadline(past) // wakes blocked calls
		c.s.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return nil
}

// Abort ends the session. yamux has no per-stream reset in its API, so the
// peer sees the end as a FIN (see SPEC.md, "yamux transport").
func (c *yamuxConn) Abort(error) { c.Close() }

func (c *yamuxConn) LocalAddr() net.Addr  { return c.local }
func (c *yamuxConn) RemoteAddr() net.Addr { return c.remote }

func (c *yamuxConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *yamuxConn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(&t)
	if c.closed.Load() {
		return nil
	}
	return c.s.SetReadDeadline(t)
}

func (c *yamuxConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	if c.closed.Load() {
		return nil
	}
	return c.s.SetWriteDeadline(t)
}

// yamuxLink is a server's link at the DP on the yamux transport. The DP
// opens one stream per session and runs the Plan5 Connect/Ack exchange at
// its start, so the server can refuse it with a reason.
type yamuxLink struct {
	s       *yamux.Session
	pending chan struct{} // semaphore of opens waiting for their Ack
}

func newYamuxLink(s *yamux.Session) *yamuxLink {
	return &yamuxLink{s: s, pending: make(chan struct{}, 1024)}
}

func (l *yamuxLink) Done() <-chan struct{} { return l.s.CloseChan() }

func (l *yamuxLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	select {
	case l.pending <- struct{}{}:
		defer func() { <-l.pending }()
	default:
		return nil, errors.New("rtcp: too many sessions are being opened to this server; retry later")
	}
	st, err := l.s.OpenStream()
	if err != nil {
		return nil, err
	}
	c := newYamuxConn(st, nil, nil, nil)
	if err := onFreshStack(func() error { return connectStream(ctx, c, name, addr) }); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// connectStream runs the DP's side of a yamux stream's handshake: Connect
// out, Ack back.
func connectStream(ctx context.Context, c *yamuxConn, name, addr string) error {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
		defer c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := c.Write(plan5.AppendMessage(nil, &plan5.Connect{N: name, Addr: addr})); err != nil {
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
		return &muxRefused{ack.R}
	}
	return nil
}

// muxRefused is a server's refusal on a yamux stream.
type muxRefused struct{ reason string }

func (e *muxRefused) Error() string { return e.reason }

// byteReader reads one byte at a time so that a bufio.Reader on top of it
// never takes bytes past the line it needs.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return b.r.Read(p[:1])
}
