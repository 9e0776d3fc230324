package rtcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"time"
)

// An HTTPDoor is the DP's door for web browsers and other HTTP clients: a
// request whose Host is <name>.<domain> (any port, any case) goes to the
// server registered as name, which serves HTTP on its Listener
// (http.Serve(l, handler)). Make one with DiscoverPoint.HTTPHandler and
// serve it with an http.Server of your own.
//
// It is an httputil.ReverseProxy whose transport opens each connection
// to a server as a session of the DP, the way port mode does: the
// Policy's rules for the name (its Allow list: web clients have no key),
// the DP's bounds and its counts apply. Keep-alive, requests for several
// names on one client connection, bodies streamed both ways at once and
// WebSocket (and other) upgrades pass through. The server gets
// X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto; any that the
// client sent are dropped, and so are Forwarded and X-Real-IP.
//
// An idle connection to a server is a session the DP holds, counted in
// Stats and toward MaxSessionsPerServer, and one that the DP's Shutdown
// waits for: call CloseIdleConnections once the http.Server in front of
// the door has shut down.
type HTTPDoor struct {
	dp        *DiscoverPoint
	domain    string // lower case, no dot at either end
	proxy     *httputil.ReverseProxy
	transport *http.Transport
}

// Bounds of the connections an HTTPDoor keeps to each server.
const (
	webIdlePerServer = 32
	webIdleTimeout   = 60 * time.Second
)

// HTTPHandler returns the DP's HTTP door for names under domain (say
// "dp.example.com": then http://printer-7.dp.example.com/ reaches the
// server printer-7). Only names that are one DNS label, in lower case,
// are reachable this way (a browser sends the Host in lower case).
func (dp *DiscoverPoint) HTTPHandler(domain string) *HTTPDoor {
	dp.init()
	h := &HTTPDoor{dp: dp, domain: webDomain(domain)}
	h.transport = &http.Transport{
		DialContext:           h.dial,
		MaxIdleConnsPerHost:   webIdlePerServer,
		IdleConnTimeout:       webIdleTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through as they are
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:      h.rewrite,
		Transport:    h.transport,
		ErrorHandler: h.proxyError,
		ErrorLog:     slog.NewLogLogger(dp.log().Handler(), slog.LevelInfo),
	}
	return h
}

// webRequest is what ServeHTTP learned of a request, for the proxy's
// rewrite and its transport's dial.
type webRequest struct {
	name   string   // the server
	client net.Addr // the client's address, checked against the Policy
}

type webRequestKey struct{}

// ServeHTTP carries r to the server its Host names, or answers with a
// page that says why it cannot: 404 for a Host outside the door's domain
// or a name no server holds, 403 for a client the Policy does not let
// reach the name, 502 for a server that refuses or does not answer, 503
// for a bound of the DP or its shutdown.
func (h *HTTPDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, err := webName(hostOnly(r.Host), h.domain)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	client := webClientAddr(r.RemoteAddr)
	// The policy is checked here for every request, not only when a
	// connection to the server is opened: a kept-alive connection may
	// carry the requests of other clients.
	if err := h.dp.webAuthorize(name, client); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	// A request's body streams to the server while its answer streams
	// back, as they would between the client and the server.
	http.NewResponseController(w).EnableFullDuplex()
	ctx := context.WithValue(r.Context(), webRequestKey{}, webRequest{name, client})
	h.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// CloseIdleConnections closes the door's idle connections to servers,
// ending their sessions.
func (h *HTTPDoor) CloseIdleConnections() { h.transport.CloseIdleConnections() }

func (h *HTTPDoor) rewrite(pr *httputil.ProxyRequest) {
	wr, _ := pr.In.Context().Value(webRequestKey{}).(webRequest)
	// Only what the door saw is passed on: the proxy drops the client's
	// own X-Forwarded-* headers, and these tell the same story.
	pr.Out.Header.Del("Forwarded")
	pr.Out.Header.Del("X-Real-Ip")
	pr.SetXForwarded()
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = wr.name // the transport's key: connections are kept per server
	pr.Out.Host = pr.In.Host
}

// dial opens a session to the server the request names; addr is
// "name:80".
func (h *HTTPDoor) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	wr, ok := ctx.Value(webRequestKey{}).(webRequest)
	if !ok {
		return nil, fmt.Errorf("rtcp: HTTPDoor: no request to dial %s for", addr)
	}
	c, err := h.dp.openWeb(ctx, wr.name, wr.client)
	if err != nil {
		return nil, &webOpenError{err}
	}
	return c, nil
}

// webOpenError is the DP's refusal of a session for the web door: it says
// which server and why.
type webOpenError struct{ err error }

func (e *webOpenError) Error() string { return e.err.Error() }
func (e *webOpenError) Unwrap() error { return e.err }

// proxyError answers a request that could not be carried to its server.
func (h *HTTPDoor) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	wr, _ := r.Context().Value(webRequestKey{}).(webRequest)
	code := http.StatusBadGateway
	var ns *noServerError
	var le *limitError
	var oe *webOpenError
	switch {
	case errors.As(err, &ns):
		code = http.StatusNotFound
		err = fmt.Errorf("rtcp: no server is registered as %q at this DP", wr.name)
	case errors.Is(err, ErrUnauthorized):
		code = http.StatusForbidden
	case errors.As(err, &le), errors.Is(err, errShuttingDown), errors.Is(err, ErrDiscoverPointClosed):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away: nobody to answer
	case errors.As(err, &oe):
		err = oe.err // the DP's own refusal says which server and why
	default:
		err = fmt.Errorf("rtcp: server %q did not answer the request: %w", wr.name, err)
	}
	h.dp.log().Info("rtcp: web request failed", "server", wr.name, "client", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path, "status", code, "reason", err)
	http.Error(w, err.Error(), code)
}

// webDomain normalizes the domain of a web door.
func webDomain(domain string) string {
	return strings.Trim(strings.ToLower(domain), ".")
}

// webName returns the server name of the host name host (no port) under
// domain (normalized by webDomain): host is <name>.<domain>, any case,
// and name one DNS label.
func webName(host, domain string) (string, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if domain == "" {
		return "", errors.New("rtcp: this web door has no domain, so it reaches no server")
	}
	name, ok := strings.CutSuffix(host, "."+domain)
	if !ok || name == "" {
		return "", fmt.Errorf("rtcp: this DP serves the names under %s (<name>.%s reaches the server name); %q is not one of them", domain, domain, host)
	}
	if strings.Contains(name, ".") {
		return "", fmt.Errorf("rtcp: %q: only a server name that is one DNS label is reachable as <name>.%s", name, domain)
	}
	if err := ValidName(name); err != nil {
		// A Host of "[cccp:x.dp.example.com]" would otherwise reach a
		// seed door's name, which the web doors do not.
		return "", err
	}
	return name, nil
}

// hostOnly returns the host of a Host header, without its port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// webClientAddr is the client address of a request's RemoteAddr.
func webClientAddr(remote string) net.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return carriedAddr(remote) // not an IP: no Allow rule matches it
}

// webAuthorize checks that the Policy lets a web client at client reach
// the server name.
func (dp *DiscoverPoint) webAuthorize(name string, client net.Addr) error {
	if err := dp.policy().authorizeClient(principal{}, name, client); err != nil {
		dp.refusedName(refusedUnauthorized, name)
		dp.log().Info("rtcp: session refused", "server", name, "client", client, "reason", err)
		return err
	}
	return nil
}

// openWeb opens a session to the server name for the web door, on behalf
// of the client at client, and returns the door's end of it. The session
// takes the DP's one path for a client that arrives by another protocol
// (serveSession, as every door does, so that the Policy, the bounds and
// the counts apply); the door's end is an in-memory pipe to the relay.
func (dp *DiscoverPoint) openWeb(ctx context.Context, name string, client net.Addr) (net.Conn, error) {
	door, relayed := net.Pipe()
	relayEnd := &addrConn{Conn: relayed, remote: client}
	opened := make(chan error) // the open's outcome, while the dial waits for it
	gone := make(chan struct{})
	answer := func(err error) bool {
		select {
		case opened <- err:
			return err == nil
		case <-gone:
			return false
		}
	}
	if !dp.g.Go(func() {
		defer relayEnd.Close()
		answered := false
		err := dp.serveSession(sessionRequest{conn: relayEnd, name: name, addr: client, answer: func(err error) bool {
			answered = true
			return answer(err)
		}})
		if !answered {
			if err == nil {
				err = fmt.Errorf("rtcp: no session to server %q", name)
			}
			answer(err)
		}
	}) {
		door.Close()
		relayed.Close()
		return nil, ErrDiscoverPointClosed
	}
	select {
	case err := <-opened:
		if err != nil {
			door.Close()
			return nil, err
		}
		return &addrConn{Conn: door, remote: &Addr{Name: name}}, nil
	case <-ctx.Done():
		close(gone)
		door.Close()
		return nil, ctx.Err()
	}
}

// addrConn is a net.Conn with another remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
