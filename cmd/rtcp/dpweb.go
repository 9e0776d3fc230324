package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"rtcp"
)

// webFlags are the dp command's web doors: HTTP by host name and TLS by
// server name, for the names under one domain.
type webFlags struct {
	http, https, domain *string
}

func addWebFlags(fs *flag.FlagSet) *webFlags {
	return &webFlags{
		http: fs.String("http", "", "serve HTTP on `ADDR`: a request for http://NAME.DOMAIN/ (-domain) goes to the server NAME, "+
			"which serves HTTP on its listener; keep-alive, WebSockets and streamed bodies pass through"),
		https: fs.String("https", "", "pass TLS on `ADDR` through by server name (SNI): a connection for NAME.DOMAIN (-domain) goes, "+
			"untouched, to the server NAME, which terminates TLS with its own certificate; the DP holds none"),
		domain: fs.String("domain", "", "the `DOMAIN` of -http and -https: NAME.DOMAIN reaches the server NAME, if NAME is one "+
			"DNS label in lower case (point a wildcard DNS record *.DOMAIN at the DP)"),
	}
}

func (f *webFlags) check(fs *flag.FlagSet) error {
	switch {
	case (*f.http != "" || *f.https != "") && *f.domain == "":
		return usageErrorf(fs, "-http and -https need -domain: NAME.DOMAIN reaches the server NAME")
	case *f.domain != "" && *f.http == "" && *f.https == "":
		return usageErrorf(fs, "-domain %s serves nothing without -http or -https", *f.domain)
	}
	return nil
}

// dpWeb is the DP's running web doors.
type dpWeb struct {
	srv  *http.Server // -http's, or nil
	door *rtcp.HTTPDoor
	wg   sync.WaitGroup
}

// start listens on -http and -https, each a door of doors, and serves
// them until stop; ServeSNI also ends when dp is closed.
func (f *webFlags) start(dp *rtcp.DiscoverPoint, doors *dpDoors, log *slog.Logger) (*dpWeb, error) {
	w := new(dpWeb)
	var hl, sl net.Listener
	var err error
	if *f.http != "" {
		if hl, err = doors.listen("http", *f.http, 0); err != nil {
			return nil, fmt.Errorf("-http: %w", err)
		}
	}
	if *f.https != "" {
		if sl, err = doors.listen("https", *f.https, 0); err != nil {
			if hl != nil {
				hl.Close()
			}
			return nil, fmt.Errorf("-https: %w", err)
		}
	}
	if hl != nil {
		hl = dp.ProxyProtocolListener(hl) // -proxy-protocol-from
		w.door = dp.HTTPHandler(*f.domain)
		w.srv = doors.webServer(w.door)
		w.wg.Go(func() {
			if err := w.srv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				log.Error("rtcp dp: -http stopped", "addr", hl.Addr(), "err", err)
			}
		})
		ready(log, "rtcp dp: web door", "url", "http://NAME."+*f.domain+":"+port(hl)+"/", "addr", hl.Addr())
	}
	if sl != nil {
		w.wg.Go(func() {
			if err := dp.ServeSNI(sl, *f.domain); !errors.Is(err, rtcp.ErrDiscoverPointClosed) {
				log.Error("rtcp dp: -https stopped", "addr", sl.Addr(), "err", err)
			}
		})
		ready(log, "rtcp dp: TLS door", "host", "NAME."+*f.domain, "port", port(sl), "addr", sl.Addr())
	}
	return w, nil
}

func port(l net.Listener) string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// shutdown stops -http taking requests, waits for those in flight until
// ctx is done, and then ends the sessions its idle connections to
// servers hold, so that the DP's Shutdown does not wait for them.
func (w *dpWeb) shutdown(ctx context.Context) {
	if w.srv != nil {
		w.srv.Shutdown(ctx)
		w.door.CloseIdleConnections()
	}
}

// stop closes -http and waits for both doors; call it once the DP is
// closed.
func (w *dpWeb) stop() {
	if w.srv != nil {
		w.srv.Close()
		w.door.CloseIdleConnections()
	}
	w.wg.Wait()
}

// webServer returns the HTTP server of -http: its request headers are
// bounded in time and size, and its idle keep-alive connections closed,
// but a request's body and its answer are not bounded in time: they
// stream between the client and the server for as long as both want.
func (d *dpDoors) webServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(maxHTTPHeaderTime, d.httpTimeout),
		IdleTimeout:       d.httpIdle,
		MaxHeaderBytes:    maxHTTPHeader,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
}
