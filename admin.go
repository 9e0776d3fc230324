package rtcp

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"net/http"
	"strings"
)

// AdminOptions configure AdminHandler.
type AdminOptions struct {
	// Metrics, if not nil, is served at /metrics: rtcp/dpmetrics.Handler,
	// say (package rtcp does not depend on Prometheus).
	Metrics http.Handler

	// Token, if not empty, is asked of every request, as the header
	// "Authorization: Bearer TOKEN"; a request without it gets 401.
	// Empty asks nothing: serve the handler on a loopback address only,
	// as it names every server and its owner.
	Token string
}

//go:embed admin
var adminFiles embed.FS

// AdminHandler returns an http.Handler that shows dp to its operator:
//
//	/             a status page that stays live (it asks /api/status
//	              every two seconds); everything it needs is served here
//	/api/status   dp.Status(), as JSON (documented in docs/operating.md)
//	/healthz      200 "ok" while dp accepts, 503 "closing" once Close or
//	              Shutdown has begun
//	/metrics      opt.Metrics, if set
//
// `rtcp dp -admin ADDR` serves it. Paths are relative to where the
// handler is mounted (strip a prefix with http.StripPrefix).
func AdminHandler(dp *DiscoverPoint, opt AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", adminFile("admin/index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /status.js", adminFile("admin/status.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /status.css", adminFile("admin/status.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(dp.Status(), "", "  ")
		if err != nil {
			http.Error(w, "rtcp: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if dp.closing() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("closing\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	if opt.Metrics != nil {
		mux.Handle("/metrics", opt.Metrics)
	}
	var h http.Handler = mux
	if opt.Token != "" {
		h = requireBearer(opt.Token, h)
	}
	return adminHeaders(h)
}

// adminFile serves one file of the page.
func adminFile(name, contentType string) http.Handler {
	b, err := adminFiles.ReadFile(name) // embedded at build time: TestAdminPage checks each
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err != nil {
			http.Error(w, "rtcp: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	})
}

// adminHeaders keeps the answers out of caches and frames, and lets the
// page load nothing but its own script, style and API: a name, which any
// server chooses, is text on the page and never markup or code.
func adminHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// requireBearer serves only requests that carry "Authorization: Bearer
// token". It compares hashes of the two in constant time, so that the
// time taken says nothing of the token, its length included.
func requireBearer(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, got, _ := strings.Cut(auth, " ")
		sum := sha256.Sum256([]byte(got))
		ok := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
		if !strings.EqualFold(scheme, "Bearer") || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtcp dp admin"`)
			http.Error(w, "rtcp: this admin server needs the header \"Authorization: Bearer TOKEN\", "+
				"TOKEN being the content of the DP's -admin-token-file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
