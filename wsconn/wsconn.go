// Package wsconn carries a byte stream over a WebSocket, for networks that
// let only HTTP(S) out: each Write is one binary message, and Read returns
// the bytes of the binary messages in order. It is the transport of
// Cumulocity remote access, and an alternative way for an rtcp indirect
// server or client to reach a DP:
//
//	// The server side, behind a proxy that lets only HTTPS out.
//	d := &wsconn.Dialer{URL: "wss://dp.example.com/rtcp"}
//	lc := rtcp.ListenConfig{Dial: d.DialContext}
//	l, err := lc.Listen(ctx, "dp.example.com:443", "printer-7")
//
//	// The DP: the same connection handler behind an HTTP endpoint.
//	http.Handle(wsconn.DefaultPath, wsconn.Handler("", dp.ServeConn))
//
// The WebSocket protocol itself is github.com/coder/websocket's: this
// package adds the net.Conn view of a dialled connection with addresses,
// errors that say what the server answered, a handler that hands accepted
// connections on, and an Acceptor that can take clients which bend RFC
// 6455 as the Cumulocity C reference agent does.
package wsconn

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"
)

// DefaultPath is the path of a DP's WebSocket endpoint for rtcp links, as
// Dialer.DialContext dials it when no URL is set.
const DefaultPath = "/rtcp"

// A Dialer opens WebSocket connections. The zero value offers no
// subprotocol and dials ws://<addr>/rtcp.
type Dialer struct {
	// URL is the WebSocket to dial (ws://, wss://, http:// or https://).
	// Empty means ws://<addr> + DefaultPath, with the addr DialContext is
	// given.
	URL string

	// Header is sent with the opening handshake (Authorization, for one).
	Header http.Header

	// Subprotocol, if not empty, is offered, and the server must answer
	// with it.
	Subprotocol string

	// HTTPClient makes the opening handshake (TLS settings, proxies).
	// Nil means http.DefaultClient.
	HTTPClient *http.Client
}

// DialContext opens the WebSocket d.URL (or ws://addr/rtcp) and returns it
// as a net.Conn; network must be "tcp", "tcp4" or "tcp6". Its signature
// is that of rtcp.ListenConfig.Dial and rtcp.Dialer.Dial, so an rtcp link
// can run over a WebSocket. ctx bounds the handshake only.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("wsconn: cannot dial network %q; a WebSocket runs over tcp", network)
	}
	u := d.URL
	if u == "" {
		u = "ws://" + addr + DefaultPath
	}
	return d.DialURL(ctx, u)
}

// DialURL opens the WebSocket u and returns it as a net.Conn. A server
// that does not upgrade the connection gives a *HandshakeError.
func (d *Dialer) DialURL(ctx context.Context, u string) (net.Conn, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("wsconn: bad WebSocket URL %q: %v", u, err)
	}
	switch pu.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return nil, fmt.Errorf("wsconn: URL %q has scheme %q; want ws, wss, http or https", u, pu.Scheme)
	}
	opts := &websocket.DialOptions{HTTPClient: d.HTTPClient, HTTPHeader: d.Header}
	if d.Subprotocol != "" {
		opts.Subprotocols = []string{d.Subprotocol}
	}
	shown := redact(pu)
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, newHandshakeError(shown, resp, err)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &net.OpError{Op: "dial", Net: "websocket", Addr: &Addr{URL: shown}, Err: err}
	}
	if d.Subprotocol != "" && c.Subprotocol() != d.Subprotocol {
		c.CloseNow()
		return nil, &HandshakeError{URL: shown, StatusCode: http.StatusSwitchingProtocols,
			Status:  "101 Switching Protocols",
			Message: fmt.Sprintf("the server answered subprotocol %q, not %q", c.Subprotocol(), d.Subprotocol)}
	}
	return newConn(c, &Addr{}, &Addr{URL: shown}), nil
}

// redact drops the user information and query of u, for errors and logs.
func redact(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	v.Fragment = ""
	return v.String()
}

// Addr is the address of a dialled WebSocket: its URL. Network returns
// "websocket".
type Addr struct{ URL string }

func (a *Addr) Network() string { return "websocket" }
func (a *Addr) String() string {
	if a.URL == "" {
		return "websocket"
	}
	return a.URL
}

// conn is a WebSocket as a net.Conn: websocket.NetConn, with addresses
// for a dialled one, and a Close that ends the WebSocket properly.
type conn struct {
	net.Conn
	ws            *websocket.Conn
	local, remote net.Addr // nil: those of the connection under it
	maxMessage    int      // if positive, the longest message Write sends
}

// Write sends p as one binary message, or as messages of at most
// maxMessage bytes.
func (c *conn) Write(p []byte) (int, error) {
	if c.maxMessage <= 0 || len(p) <= c.maxMessage {
		return c.Conn.Write(p)
	}
	var n int
	for len(p) > 0 {
		k, err := c.Conn.Write(p[:min(len(p), c.maxMessage)])
		n += k
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func newConn(ws *websocket.Conn, local, remote net.Addr) *conn {
	return &conn{Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary),
		ws: ws, local: local, remote: remote}
}

func (c *conn) LocalAddr() net.Addr {
	if c.local == nil {
		return c.Conn.LocalAddr()
	}
	return c.local
}

func (c *conn) RemoteAddr() net.Addr {
	if c.remote == nil {
		return c.Conn.RemoteAddr()
	}
	return c.remote
}

// Close sends a close frame and waits (at most a few seconds) for the
// peer's, so that the peer reads a clean end (io.EOF). NetConn's own Close
// first cancels a Read in progress, which drops the connection without a
// close frame, and the peer sees an error instead.
func (c *conn) Close() error {
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	c.Conn.Close() // releases NetConn's timers
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// Abort ends the WebSocket at once by closing the connection under it,
// with no close handshake: its peer reads an error (the connection went
// without a close frame, an abnormal closure: status 1006 in a browser),
// not the clean end that Close's normal closure is. A relay cuts a
// connection it carries so (relay.Aborter), when the other side failed.
// A close frame (1011, internal error) would be politer, but the
// library sends one only with its handshake, which waits up to 5 s for
// the frame to go out and 5 s for the peer's answer: a cut must not wait
// for a peer that has stopped reading.
func (c *conn) Abort(error) {
	c.ws.CloseNow()
	c.Conn.Close() // releases NetConn's timers
}

// HandshakeError is a server's refusal of a WebSocket: it answered the
// opening handshake with an HTTP status other than 101, or with the wrong
// subprotocol.
type HandshakeError struct {
	URL        string // the URL dialled, without user information or query
	StatusCode int    // the HTTP status code, e.g. 401
	Status     string // the HTTP status line, e.g. "401 Unauthorized"
	Message    string // the start of the answer's body, or what was wrong
	Err        error  // the WebSocket library's error, if any
}

func (e *HandshakeError) Error() string {
	msg := fmt.Sprintf("wsconn: %s refused the WebSocket: %s", e.URL, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (check the credentials)"
	case http.StatusNotFound:
		msg += " (check the URL)"
	}
	return msg
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func newHandshakeError(u string, resp *http.Response, err error) *HandshakeError {
	e := &HandshakeError{URL: u, StatusCode: resp.StatusCode, Status: resp.Status, Err: err}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		e.Message = oneLine(string(b))
	}
	return e
}

// oneLine squeezes an answer's body onto one short line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Accept upgrades an HTTP request to a WebSocket and returns it as a
// net.Conn over binary messages, with the addresses of the connection
// under it. If subprotocol is not empty it is answered when the client
// offers it. On failure Accept has already answered the request. It is
// (&Acceptor{Subprotocol: subprotocol}).Accept(w, r).
func Accept(w http.ResponseWriter, r *http.Request, subprotocol string) (net.Conn, error) {
	return (&Acceptor{Subprotocol: subprotocol}).Accept(w, r)
}

// An Acceptor upgrades HTTP requests to WebSockets. The zero value answers
// no subprotocol and holds clients to RFC 6455.
type Acceptor struct {
	// Subprotocol, if not empty, is answered when the client offers it.
	Subprotocol string

	// LenientKey accepts a Sec-WebSocket-Key that is not, as RFC 6455
	// asks, the base64 of 16 bytes, if it is (white space around it
	// dropped) 1 to 64 printable ASCII characters without spaces: the
	// Cumulocity C reference agent sends
	// the 25 characters "dGhlIHNhbXBsZSBub25jazz==", which the cloud
	// accepts. Sec-WebSocket-Accept is computed from the key as sent, as
	// RFC 6455 computes it. Anything else is still answered 400.
	LenientKey bool

	// MaxMessage, if positive, bounds the payload of each message the
	// connection writes: a longer Write goes out as several messages, in
	// order. For peers that misread long frames: the Cumulocity C
	// reference agent reads a 16-bit length's high byte through a signed
	// char, so it needs messages under 32768 bytes.
	MaxMessage int
}

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// validKey stands in for a key the library would refuse. Any valid key
// will do: the answer's Sec-WebSocket-Accept is replaced (acceptAnswer).
const validKey = "AAAAAAAAAAAAAAAAAAAAAA=="

// Accept upgrades the request r to a WebSocket and returns it as a
// net.Conn over binary messages, with the addresses of the connection
// under it. On failure it has already answered the request.
func (a *Acceptor) Accept(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	if a.LenientKey {
		if key, ok := lenientKey(r.Header); ok {
			// The library checks the key strictly: hand it a request
			// with a valid one, and put the answer for the key the
			// client sent into the response.
			r = r.Clone(r.Context())
			r.Header.Set("Sec-WebSocket-Key", validKey)
			w = &acceptAnswer{ResponseWriter: w, accept: secWebSocketAccept(key)}
		}
	}
	opts := &websocket.AcceptOptions{}
	if a.Subprotocol != "" {
		opts.Subprotocols = []string{a.Subprotocol}
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	nc := newConn(c, nil, nil)
	nc.maxMessage = a.MaxMessage
	return nc, nil
}

// lenientKey returns the request's one Sec-WebSocket-Key when the
// library would refuse it but LenientKey accepts it.
func lenientKey(h http.Header) (string, bool) {
	keys := h.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return "", false
	}
	key := strings.TrimSpace(keys[0])
	if b, err := base64.StdEncoding.DecodeString(key); err == nil && len(b) == 16 {
		return "", false // valid: nothing to do
	}
	if key == "" || len(key) > 64 {
		return "", false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' {
			return "", false
		}
	}
	return key, true
}

func secWebSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// acceptAnswer sets Sec-WebSocket-Accept in a 101 answer. Unwrap lets the
// library reach the http.Hijacker under it.
type acceptAnswer struct {
	http.ResponseWriter
	accept string
}

func (w *acceptAnswer) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		w.Header().Set("Sec-WebSocket-Accept", w.accept)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *acceptAnswer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Handler returns an http.Handler that upgrades each request with Accept
// and calls serve with the connection, in the request's goroutine; serve
// owns the connection and closes it. With the DiscoverPoint's ServeConn as
// serve, rtcp links and clients reach the DP over WebSockets.
func Handler(subprotocol string, serve func(net.Conn)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, subprotocol)
		if err != nil {
			return
		}
		serve(c)
	})
}
