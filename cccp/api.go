package cccp

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	wire "rtcp/protocol/cccp"
)

// ServeHTTP serves the control API: GET /on, /off and /status, each with
// its parameters in the query, answered with JSON (see
// protocol/cccp/SPEC.md), but for /off's 200, which has no body. Beyond
// the vendor's answers it gives 400 for a bad query, 401 without the
// token, 404 for another path, 405 for another method and 409 for an /on
// that asks a proxy already on for other parameters, each with a
// {"message": ...} body.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.init()
	if !p.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cccp control API"`)
		msg := "cccp: the control API needs the header Authorization: Bearer <token>"
		if p.Token == "" {
			msg = "cccp: this proxy has no API token, so only loopback clients may use the control API"
		}
		writeError(w, http.StatusUnauthorized, msg)
		return
	}
	switch r.URL.Path {
	case "/on", "/off", "/status":
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("cccp: no endpoint %q; the control API has /on, /off and /status", r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("cccp: use GET %s, not %s", r.URL.Path, r.Method))
		return
	}
	switch r.URL.Path {
	case "/on":
		p.serveOn(w, r)
	case "/off":
		p.serveOff(w, r)
	case "/status":
		p.serveStatus(w, r)
	}
}

func (p *Proxy) authorized(r *http.Request) bool {
	if p.Token == "" {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		return err == nil && ap.Addr().Unmap().IsLoopback()
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(p.Token)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"message":"cccp: cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, wire.ErrorResponse{Message: msg})
}

func (p *Proxy) serveOn(w http.ResponseWriter, r *http.Request) {
	req, err := wire.ParseOnQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	host := p.Host
	if host == "" {
		host = requestHost(r)
	}
	pr, err := p.turnOn(req, host)
	var conflict *onConflictError
	switch {
	case errors.As(err, &conflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errNoPorts):
		writeError(w, http.StatusServiceUnavailable, wire.MsgNoAvailablePorts)
	case errors.Is(err, ErrProxyClosed):
		writeError(w, http.StatusServiceUnavailable, "cccp: the proxy service is shutting down; retry later")
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, wire.OnResponse{Host: pr.host, Port: pr.port})
	}
}

// requestHost is the host the request was addressed to, without port.
func requestHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		return h
	}
	if r.Host != "" {
		return strings.Trim(r.Host, "[]")
	}
	return "localhost"
}

func (p *Proxy) serveOff(w http.ResponseWriter, r *http.Request) {
	serial, err := wire.ParseSerialQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	p.mu.Lock()
	pr := p.proxies[serial]
	p.mu.Unlock()
	if pr == nil || !p.turnOff(pr, "turned off by /off") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("cccp: no proxy is on for serial %q", serial))
		return
	}
	// The documentation gives no body for this 200.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
}

func (p *Proxy) serveStatus(w http.ResponseWriter, r *http.Request) {
	serial, err := wire.ParseSerialQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, ok := p.Status(serial)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("cccp: no proxy is on for serial %q", serial))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Status returns the state of the proxy for serial, and false if none is
// on.
func (p *Proxy) Status(serial string) (wire.StatusResponse, bool) {
	p.init()
	p.mu.Lock()
	pr := p.proxies[serial]
	d := p.devices[serial]
	var st wire.StatusResponse
	if pr != nil {
		st.DeviceConnected = d != nil
		st.ClientConnected = pr.client != nil
		st.Transferred = pr.transferred.Load()
	}
	p.mu.Unlock()
	if pr == nil {
		return st, false
	}
	if d != nil && !st.ClientConnected {
		// A client of another door (rtcp.Dial) in a session counts too.
		d.mu.Lock()
		st.ClientConnected = d.view != nil && d.view.count == &pr.transferred
		d.mu.Unlock()
	}
	return st, true
}
