package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"rtcp"
	"rtcp/c8y"
	"rtcp/cccp"
	"rtcp/wsconn"
)

// seedFlags are the dp flags of the doors for the Cumulocity and CCCP
// seed systems, and of rtcp links over WebSockets.
type seedFlags struct {
	c8yListen, c8yTokenFile, c8yCert, c8yKey             *string
	c8yServerKey                                         *string
	c8yMaxKeys                                           *int
	cccpAPI, cccpDevices, cccpPorts, cccpHost, cccpToken *string
	cccpKey                                              *string
}

func addSeedFlags(fs *flag.FlagSet) *seedFlags {
	return &seedFlags{
		c8yListen: fs.String("c8y-listen", "", "TCP `address` of an HTTP server for Cumulocity remote access "+
			"(/service/remoteaccess/device/KEY, /client/KEY, POST /service/remoteaccess/keys) and for rtcp links over WebSockets (/rtcp)"),
		c8yTokenFile: fs.String("c8y-token-file", "", "`file` holding the bearer token that creating remote access keys needs; "+
			"without it only loopback clients may create keys"),
		c8yCert:     fs.String("c8y-cert", "", "TLS certificate `file` for -c8y-listen (with -c8y-key): serve HTTPS and wss"),
		c8yKey:      fs.String("c8y-key", "", "TLS key `file` for -c8y-listen"),
		cccpAPI:     fs.String("cccp-api", "", "TCP `address` of the CCCP control API (/on, /off, /status)"),
		cccpDevices: fs.String("cccp-devices", "", "TCP `address` CCCP devices dial to register with their serial"),
		cccpPorts:   fs.String("cccp-ports", "", "`LO-HI`: the range of ports CCCP proxies listen on, e.g. 40000-40099"),
		cccpHost:    fs.String("cccp-host", "", "`host` the CCCP /on answer names (default: the host the API request was sent to)"),
		cccpToken: fs.String("cccp-token-file", "", "`file` holding the bearer token of the CCCP control API; "+
			"without it only loopback clients may use the API"),
		c8yServerKey: fs.String("c8y-server-key", "", "`key` of the -config policy that remote access key names register as, "+
			"so that the policy's name rules apply to them (not the TLS key: see -c8y-key); empty: anonymous, "+
			"admitted only if the policy allows anonymous servers, and only for names no rule gives to owners"),
		c8yMaxKeys: fs.Int("c8y-max-keys", c8y.DefaultMaxKeys, "remote access keys held at once, open tunnels included; beyond it the keys API answers 503"),
		cccpKey: fs.String("cccp-key", "", "`key` of the -config policy that CCCP device names (cccp:SERIAL) register as; "+
			"a device whose name the policy gives to another key is refused; empty: anonymous, admitted only if the "+
			"policy allows anonymous servers, and only for names no rule gives to owners"),
	}
}

// policyKey checks that key, given with flag, is a key of the policy pol
// ("" is anonymous and always passes): a door registering as a key the
// DP does not know would have every name refused.
func policyKey(fs *flag.FlagSet, flag, key string, pol *rtcp.Policy) error {
	if key == "" {
		return nil
	}
	if pol == nil {
		return usageErrorf(fs, "-%s names a key of the policy: give -config (or -token-file) with key %q", flag, key)
	}
	if _, ok := pol.Keys[key]; !ok {
		return usageErrorf(fs, "-%s %q is not a key of the policy (-config's keys)", flag, key)
	}
	return nil
}

// check validates the flags' combinations, as usage errors.
func (f *seedFlags) check(fs *flag.FlagSet) error {
	if *f.c8yListen == "" && (*f.c8yTokenFile != "" || *f.c8yCert != "" || *f.c8yKey != "") {
		return usageErrorf(fs, "-c8y-token-file, -c8y-cert and -c8y-key need -c8y-listen")
	}
	if (*f.c8yCert == "") != (*f.c8yKey == "") {
		return usageErrorf(fs, "give -c8y-cert and -c8y-key together")
	}
	cccpOn := *f.cccpAPI != "" || *f.cccpDevices != "" || *f.cccpPorts != ""
	if cccpOn && (*f.cccpAPI == "" || *f.cccpDevices == "" || *f.cccpPorts == "") {
		return usageErrorf(fs, "CCCP needs -cccp-api, -cccp-devices and -cccp-ports together")
	}
	if *f.c8yListen == "" && *f.c8yServerKey != "" {
		return usageErrorf(fs, "-c8y-server-key needs -c8y-listen")
	}
	if *f.c8yMaxKeys < 1 {
		return usageErrorf(fs, "-c8y-max-keys must be at least 1")
	}
	if !cccpOn && (*f.cccpHost != "" || *f.cccpToken != "" || *f.cccpKey != "") {
		return usageErrorf(fs, "-cccp-host, -cccp-token-file and -cccp-key need -cccp-api, -cccp-devices and -cccp-ports")
	}
	if cccpOn {
		if _, _, err := parsePortRange(*f.cccpPorts); err != nil {
			return usageErrorf(fs, "-cccp-ports %s", err)
		}
	}
	return nil
}

// proxyPorts returns how many listeners the CCCP proxies may open: the
// size of -cccp-ports.
func (f *seedFlags) proxyPorts() int {
	lo, hi, err := parsePortRange(*f.cccpPorts)
	if err != nil {
		return 0
	}
	return hi - lo + 1
}

// parsePortRange parses "LO-HI".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%q: want LO-HI, two ports from 1 to 65535 with LO <= HI, e.g. 40000-40099", s)
	}
	return lo, hi, nil
}

// readToken reads a bearer token from a file: its first line, trimmed.
func readToken(flagName, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("-%s: %w", flagName, err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("-%s: %s holds no token on its first line", flagName, file)
	}
	return tok, nil
}

// start starts the servers the flags ask for, beside dp, each listener a
// door of doors, and returns a function that stops them and waits for
// them.
func (f *seedFlags) start(dp *rtcp.DiscoverPoint, doors *dpDoors) (stop func(), err error) {
	log := doors.log
	var (
		closers []func()
		wg      sync.WaitGroup
	)
	stop = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		wg.Wait()
	}
	fail := func(err error) (func(), error) {
		stop()
		return nil, err
	}
	serveHTTP := func(what string, l net.Listener, h http.Handler, cert, key string) {
		hs := doors.httpServer(h)
		closers = append(closers, func() { hs.Close() })
		wg.Go(func() {
			var err error
			if cert != "" {
				err = hs.ServeTLS(l, cert, key)
			} else {
				err = hs.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("rtcp dp: "+what+" stopped", "err", err)
			}
		})
	}

	if *f.c8yListen != "" {
		srv := &c8y.Server{DP: dp, Logger: log, Key: *f.c8yServerKey, MaxKeys: *f.c8yMaxKeys}
		if *f.c8yTokenFile != "" {
			if srv.Token, err = readToken("c8y-token-file", *f.c8yTokenFile); err != nil {
				return fail(err)
			}
		}
		l, err := doors.listen("c8y", *f.c8yListen, 0)
		if err != nil {
			return fail(fmt.Errorf("-c8y-listen: %w", err))
		}
		closers = append(closers, func() { srv.Close() })
		mux := http.NewServeMux()
		mux.Handle("/service/remoteaccess/", srv)
		mux.Handle(wsconn.DefaultPath, wsconn.Handler("", dp.ServeConn))
		serveHTTP("remote access", l, mux, *f.c8yCert, *f.c8yKey)
		ready(log, "rtcp dp: remote access and rtcp over WebSocket", "addr", l.Addr().String())
		if dp.TLSConfig != nil {
			// ServeConn runs the DP's TLS handshake, as Serve does: a
			// WebSocket is one more way in, not a way around -tls-ca.
			ready(log, "rtcp dp: "+wsconn.DefaultPath+" asks for the TLS of -listen inside the WebSocket (rtcp -dp ws://... -tls...), "+
				"and a client certificate if -tls-ca asks for one", "addr", l.Addr().String())
		}
	}

	if *f.cccpAPI != "" {
		lo, hi, _ := parsePortRange(*f.cccpPorts)
		proxies := doors.door("cccp-proxies", 0) // all proxy ports: one door
		p := &cccp.Proxy{DP: dp, Host: *f.cccpHost, MinPort: lo, MaxPort: hi, Logger: log, Key: *f.cccpKey,
			Listen: func(network, addr string) (net.Listener, error) {
				l, err := net.Listen(network, addr)
				if err != nil {
					return nil, err
				}
				return proxies.Listener(l), nil
			}}
		if *f.cccpToken != "" {
			if p.Token, err = readToken("cccp-token-file", *f.cccpToken); err != nil {
				return fail(err)
			}
		}
		devl, err := doors.listen("cccp-devices", *f.cccpDevices, 0)
		if err != nil {
			return fail(fmt.Errorf("-cccp-devices: %w", err))
		}
		apil, err := doors.listen("cccp-api", *f.cccpAPI, cccpAPIDoorMax)
		if err != nil {
			devl.Close()
			return fail(fmt.Errorf("-cccp-api: %w", err))
		}
		closers = append(closers, func() { p.Close() })
		wg.Go(func() {
			if err := p.ServeDevices(devl); !errors.Is(err, cccp.ErrProxyClosed) {
				log.Error("rtcp dp: CCCP device port stopped", "err", err)
			}
		})
		serveHTTP("CCCP control API", apil, p, "", "")
		ready(log, "rtcp dp: CCCP doors", "devices", devl.Addr().String(), "api", apil.Addr().String(), "ports", fmt.Sprintf("%d-%d", lo, hi))
	}
	return stop, nil
}

// dpDialer returns the address to give Listen or Dial for the -dp flag
// dp, and the dial function: a ws:// or wss:// URL (http:// and https://
// too) is a DP reached over a WebSocket, anything else host:port over TCP.
func dpDialer(dp string) (addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	u, err := url.Parse(dp)
	if err != nil || u.Host == "" {
		return dp, nil
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
		if u.Path == "" {
			u.Path = wsconn.DefaultPath
		}
		d := &wsconn.Dialer{URL: u.String()}
		return u.Host, d.DialContext
	}
	return dp, nil
}
