package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"rtcp"
	"rtcp/dpmetrics"
)

// adminFlags are the dp command's flags for its admin server: the
// status page, its JSON, the health check and the metrics.
type adminFlags struct {
	addr         *string
	tokenFile    *string
	maxNameStats *int
}

// minAdminToken is the shortest -admin-token-file token accepted.
const minAdminToken = 16

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	return &adminFlags{
		addr: fs.String("admin", "", "serve the DP's status on http://`ADDR`/: a live page (names, owners, links, "+
			"sessions, bytes each way, refusals), /api/status (JSON), /healthz (503 once shutting down) and /metrics; "+
			"ADDR must be a loopback address, such as 127.0.0.1:9090, unless -admin-token-file is given"),
		tokenFile: fs.String("admin-token-file", "", "`file` holding a token (at least 16 characters: openssl rand -hex 32) "+
			"that every request to -admin must carry, as the header \"Authorization: Bearer TOKEN\"; "+
			"with it, -admin may be any address"),
		maxNameStats: fs.Int("max-name-stats", 0, "most names whose sessions, bytes and refusals -admin and -metrics "+
			"count on their own; the others are summed, under name=\"other\" (0: 1000; negative: none)"),
	}
}

func (f *adminFlags) check(fs *flag.FlagSet) error {
	if *f.tokenFile != "" && *f.addr == "" {
		return usageErrorf(fs, "-admin-token-file is the token of -admin: give -admin ADDR too")
	}
	return nil
}

// configure sets dp's bound on the names counted on their own.
func (f *adminFlags) configure(dp *rtcp.DiscoverPoint) {
	dp.MaxNameStats = *f.maxNameStats
}

// dpMetricsHandler is the one handler of the DP's metrics, served on
// -metrics and at -admin's /metrics.
func dpMetricsHandler(dp *rtcp.DiscoverPoint, doors *dpDoors) http.Handler {
	return dpmetrics.Handler(dp, dpmetrics.NewBudgetCollector(doors.budget))
}

// serve serves the admin server on -admin, if given, until stop. It
// refuses an address beyond this host without -admin-token-file: the
// page names every server and its owner.
func (f *adminFlags) serve(dp *rtcp.DiscoverPoint, metrics http.Handler, doors *dpDoors, log *slog.Logger) (stop func(), err error) {
	if *f.addr == "" {
		return func() {}, nil
	}
	var token string
	if *f.tokenFile != "" {
		if token, err = readAdminToken(*f.tokenFile); err != nil {
			return nil, err
		}
		warnIfShared(*f.tokenFile, "-admin-token-file", log)
	} else if err := checkLoopback(*f.addr); err != nil {
		return nil, err
	}
	l, err := doors.listen("admin", *f.addr, metricsDoorMax)
	if err != nil {
		return nil, fmt.Errorf("-admin: %w", err)
	}
	if token == "" {
		// What the name resolved to is what was checked; say so again
		// of the address the listener has.
		if ta, ok := l.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			l.Close()
			return nil, adminNotLoopback(*f.addr, l.Addr().String())
		}
	}
	srv := doors.httpServer(rtcp.AdminHandler(dp, rtcp.AdminOptions{Metrics: metrics, Token: token}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("rtcp dp: admin server stopped", "addr", l.Addr(), "err", err)
		}
	}()
	ready(log, "rtcp dp: status page", "url", "http://"+l.Addr().String()+"/")
	return func() { srv.Close(); <-done }, nil
}

// readAdminToken reads -admin-token-file: one token, spaces and line
// ends around it left out.
func readAdminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-admin-token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case len(token) < minAdminToken:
		return "", fmt.Errorf("-admin-token-file %s: the token has %d characters, want at least %d "+
			"(make one with: openssl rand -hex 32 > %s)", path, len(token), minAdminToken, path)
	case strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("-admin-token-file %s: the token has a space or a line break inside; "+
			"want one word, as it goes in the header \"Authorization: Bearer TOKEN\"", path)
	}
	return token, nil
}

// checkLoopback reports an error unless addr's host is a loopback
// address, or a name that resolves to loopback addresses only. An empty
// host is every address of this host.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-admin %s: %w", addr, err)
	}
	if host == "" {
		return adminNotLoopback(addr, "every address of this host")
	}
	if ip := net.ParseIP(strings.Split(host, "%")[0]); ip != nil {
		if !ip.IsLoopback() {
			return adminNotLoopback(addr, ip.String())
		}
		return nil
	}
	ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip", host)
	if err != nil {
		return fmt.Errorf("-admin %s: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return adminNotLoopback(addr, ip.String())
		}
	}
	return nil
}

func adminNotLoopback(addr, at string) error {
	return fmt.Errorf("-admin %s: %s is not a loopback address, and the status page names every server "+
		"and its owner: serve it on 127.0.0.1:PORT (and reach it through ssh -L), or give -admin-token-file FILE "+
		"to ask every request for the token in FILE", addr, at)
}
