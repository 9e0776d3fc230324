package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"rtcp"
	"rtcp/dpmetrics"
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
}

func addHardeningFlags(fs *flag.FlagSet) *hardeningFlags {
	return &hardeningFlags{
		metrics: fs.String("metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics "+
			"(servers, links, sessions, bytes each way, refusals by reason)"),
		keepAlive: fs.Duration("keepalive", 0, "heartbeat period asked of every link; a link silent for twice "+
			"as long is dropped (0: 15s; negative: off)"),
		handshakeTimeout: fs.Duration("handshake-timeout", 0, "close a connection that completes no handshake in this `time` (0: 10s)"),
		maxNames:         fs.Int("max-names", 0, "most names registered at once (0: 100000)"),
		maxLinks:         fs.Int("max-links-per-owner", 0, "most links of one server, over all its names (0: 64)"),
		maxSessions:      fs.Int("max-sessions-per-server", 0, "most sessions relayed to one name at once (0: 10000)"),
		maxPending:       fs.Int("max-pending-connects", 0, "most sessions to one name waiting for its answer (0: 1024)"),
	}
}

func (f *hardeningFlags) check(fs *flag.FlagSet) error {
	for name, v := range map[string]int{
		"max-names": *f.maxNames, "max-links-per-owner": *f.maxLinks,
		"max-sessions-per-server": *f.maxSessions, "max-pending-connects": *f.maxPending,
	} {
		if v < 0 {
			return usageErrorf(fs, "-%s %d: want a positive number, or 0 for the default", name, v)
		}
	}
	if *f.handshakeTimeout < 0 {
		return usageErrorf(fs, "-handshake-timeout %v: want a positive duration, or 0 for the default", *f.handshakeTimeout)
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
}

// serveMetrics serves dp's metrics on -metrics, if given, until stop.
func (f *hardeningFlags) serveMetrics(dp *rtcp.DiscoverPoint, log *slog.Logger, stderr io.Writer) (stop func(), err error) {
	if *f.metrics == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", *f.metrics)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", dpmetrics.Handler(dp))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("rtcp dp: metrics server stopped", "addr", l.Addr(), "err", err)
		}
	}()
	fmt.Fprintf(stderr, "rtcp dp: metrics on http://%s/metrics\n", l.Addr())
	return func() { srv.Close(); <-done }, nil
}
