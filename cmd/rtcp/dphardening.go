package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"rtcp"
)

// hardeningFlags are the dp command's flags for its bounds, keepalive and
// metrics. Zero leaves a bound at the library's default.
type hardeningFlags struct {
	metrics          *string
	keepAlive        *time.Duration
	handshakeTimeout *time.Duration
	maxNames         *int
	maxLinks         *int
	maxSessions      *int
	maxPending       *int
	maxConns         *int
	maxConnsPerDoor  *int
	maxHandshakes    *int // per source
	maxAuthFailures  *int // per source, a minute
	httpTimeout      *time.Duration
	httpIdleTimeout  *time.Duration
	proxyFrom        prefixList // -proxy-protocol-from (dpproxy.go)
}

// Caps of the doors that need few connections, whatever -max-conns-per-door
// says (it may set a lower one).
const (
	metricsDoorMax = 32  // -metrics, and -admin: scrapers and people
	cccpAPIDoorMax = 256 // -cccp-api: requests to open and close proxies
)

// Bounds of the HTTP servers' requests (-metrics, -admin, -c8y-listen, -cccp-api).
const (
	defaultHTTPTimeout = 30 * time.Second // to read a request, and to write its answer
	defaultHTTPIdle    = 30 * time.Second // a keep-alive connection between requests
	maxHTTPHeader      = 64 << 10
	maxHTTPHeaderTime  = 10 * time.Second
)

func addHardeningFlags(fs *flag.FlagSet) *hardeningFlags {
	f := &hardeningFlags{
		metrics: fs.String("metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics "+
			"(servers, links, sessions, bytes each way, refusals by reason; in all and by name), as -admin does"),
		keepAlive: fs.Duration("keepalive", 0, "heartbeat period asked of every link; a link silent for twice "+
			"as long is dropped (0: 15s; negative: off)"),
		handshakeTimeout: fs.Duration("handshake-timeout", 0, "close a connection that completes no handshake in this `time` (0: 10s)"),
		maxNames:         fs.Int("max-names", 0, "most names registered at once (0: 100000)"),
		maxLinks:         fs.Int("max-links-per-owner", 0, "most links of one server, over all its names (0: 64)"),
		maxSessions:      fs.Int("max-sessions-per-server", 0, "most sessions relayed to one name at once (0: 10000)"),
		maxPending:       fs.Int("max-pending-connects", 0, "most sessions to one name waiting for its answer (0: 1024)"),
		maxConns: fs.Int("max-conns", 0, "most connections all doors hold at once (-listen, each -port and -mihini, -http, -https, "+
			"-c8y-listen, the CCCP doors and proxy ports, -metrics, -admin): half is split into a part guaranteed to each door, "+
			"the rest goes to whichever asks first, and a connection over the bound is reset "+
			"(0: the open-file limit, less a tenth and the -cccp-ports range)"),
		maxConnsPerDoor: fs.Int("max-conns-per-door", 0, fmt.Sprintf("most connections one door holds at once "+
			"(0: no cap of its own beyond its part of -max-conns and what is free to share; -metrics and -admin have a cap of %d each, -cccp-api of %d)",
			metricsDoorMax, cccpAPIDoorMax)),
		maxHandshakes: fs.Int("max-handshakes-per-source", 0, "most connections from one address (an IPv6 /64) in their "+
			"handshake at once; more are refused (0: 64; negative: no bound; loopback is never bounded)"),
		maxAuthFailures: fs.Int("max-auth-failures-per-source", 0, "failed authentications one address may make a minute; "+
			"past them its connections are refused until the minute is over (0: 30; negative: no bound; loopback is never bounded)"),
		httpTimeout: fs.Duration("http-timeout", defaultHTTPTimeout, "longest `time` the HTTP servers (-metrics, -admin, -c8y-listen, "+
			"-cccp-api) take to read a request, and to write its answer; a WebSocket, once open, is exempt"),
		httpIdleTimeout: fs.Duration("http-idle-timeout", defaultHTTPIdle, "close an HTTP keep-alive connection that "+
			"sends no request for this `time`"),
	}
	fs.Var(&f.proxyFrom, "proxy-protocol-from", proxyFromUsage)
	return f
}

func (f *hardeningFlags) check(fs *flag.FlagSet) error {
	for name, v := range map[string]int{
		"max-names": *f.maxNames, "max-links-per-owner": *f.maxLinks,
		"max-sessions-per-server": *f.maxSessions, "max-pending-connects": *f.maxPending,
		"max-conns": *f.maxConns, "max-conns-per-door": *f.maxConnsPerDoor,
	} {
		if v < 0 {
			return usageErrorf(fs, "-%s %d: want a positive number, or 0 for the default", name, v)
		}
	}
	if *f.handshakeTimeout < 0 {
		return usageErrorf(fs, "-handshake-timeout %v: want a positive duration, or 0 for the default", *f.handshakeTimeout)
	}
	for name, v := range map[string]time.Duration{"http-timeout": *f.httpTimeout, "http-idle-timeout": *f.httpIdleTimeout} {
		if v <= 0 {
			return usageErrorf(fs, "-%s %v: want a positive duration", name, v)
		}
	}
	return nil
}

// configure sets dp's bounds from the flags.
func (f *hardeningFlags) configure(dp *rtcp.DiscoverPoint) {
	dp.KeepAlive = *f.keepAlive
	dp.HandshakeTimeout = *f.handshakeTimeout
	dp.MaxNames = *f.maxNames
	dp.MaxLinksPerOwner = *f.maxLinks
	dp.MaxSessionsPerServer = *f.maxSessions
	dp.MaxPendingConnects = *f.maxPending
	dp.MaxHandshakesPerSource = *f.maxHandshakes
	dp.MaxAuthFailuresPerSource = *f.maxAuthFailures
	dp.ProxyProtocolFrom = f.proxyFrom
}

// doors returns the DP's doors under the budget the flags set. reserved
// is what the budget leaves aside for listeners that the DP opens while
// it runs (the CCCP proxy ports).
func (f *hardeningFlags) doors(reserved int, log *slog.Logger) *dpDoors {
	b := &rtcp.ConnBudget{Max: *f.maxConns, Logger: log}
	if b.Max == 0 {
		b.Max = max(rtcp.DefaultConnBudget()-reserved, 64)
	}
	return &dpDoors{budget: b, perDoor: *f.maxConnsPerDoor,
		httpTimeout: *f.httpTimeout, httpIdle: *f.httpIdleTimeout, log: log}
}

// dpDoors makes the DP's listeners, each a door of one budget of
// connections (rtcp.ConnBudget), and its HTTP servers, with bounded
// requests: no door can take the descriptors that the others need.
type dpDoors struct {
	budget                *rtcp.ConnBudget
	perDoor               int // -max-conns-per-door
	httpTimeout, httpIdle time.Duration
	log                   *slog.Logger
}

// door makes the door name, with at most max connections (0: no cap but
// -max-conns-per-door's).
func (d *dpDoors) door(name string, max int) *rtcp.Door {
	if d.perDoor > 0 && (max == 0 || d.perDoor < max) {
		max = d.perDoor
	}
	return d.budget.Door(name, max)
}

// listen listens on the TCP address addr as the door name.
func (d *dpDoors) listen(name, addr string, max int) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return d.door(name, max).Listener(l), nil
}

// httpServer returns an HTTP server of h whose requests are bounded in
// time and size, and whose idle keep-alive connections are closed.
func (d *dpDoors) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           webSocketsLive(h),
		ReadHeaderTimeout: min(maxHTTPHeaderTime, d.httpTimeout),
		ReadTimeout:       d.httpTimeout,
		WriteTimeout:      d.httpTimeout,
		IdleTimeout:       d.httpIdle,
		MaxHeaderBytes:    maxHTTPHeader,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
}

// webSocketsLive lifts the server's read and write deadlines from a
// request to open a WebSocket (a GET without a body), which the server
// would otherwise cut once its request time is up: an open WebSocket is a
// link or a tunnel, bounded by its own handshake timeout and keepalive.
func webSocketsLive(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.ContentLength == 0 &&
			strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "websocket") {
			rc := http.NewResponseController(w)
			rc.SetReadDeadline(time.Time{})
			rc.SetWriteDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics serves metrics (dpMetricsHandler: dp's metrics, and
// those of the doors' budget) on -metrics, if given, until stop.
func (f *hardeningFlags) serveMetrics(metrics http.Handler, doors *dpDoors) (stop func(), err error) {
	if *f.metrics == "" {
		return func() {}, nil
	}
	l, err := doors.listen("metrics", *f.metrics, metricsDoorMax)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	log := doors.log
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	srv := doors.httpServer(mux)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("rtcp dp: metrics server stopped", "addr", l.Addr(), "err", err)
		}
	}()
	ready(log, "rtcp dp: metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return func() { srv.Close(); <-done }, nil
}
