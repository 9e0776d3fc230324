package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"rtcp"
)

func runExpose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("expose", "expose -dp ADDR -name NAME -to HOST:PORT (or -config FILE) [-transport json|yamux|tcp] [-direct] [-pool N] [-proxy-protocol v1|v2] [-window-memory MiB] [-fail-fast] [-max-backoff DURATION] [-tls] [-tls-ca FILE] [-token-file FILE] [-log-level LEVEL] [-log-format text|json]", `
Run an indirect server: register NAME at the discover point ADDR and
carry each session a client opens to NAME to a new TCP connection to
HOST:PORT. A session is accepted once HOST:PORT has answered; if it
refuses, the client's session is refused with the reason, and only that
session. Lost links to the DP are dialled again with backoff. It runs
until SIGINT or SIGTERM.

A DP that cannot be reached at start (the connection is refused, no
route, no such host: a machine that boots before its network) is
dialled again with the same backoff until it can be, each failure
logged; -fail-fast exits at once instead. A DP that answers and refuses
the name, or that speaks another protocol or TLS setting, ends it at
once either way.

With -config, one process exposes several services, each under its own
name: a service that fails is logged and started again with backoff,
and the others go on.

Examples:

	rtcp expose -dp dp.example.com:9000 -name pi-7 -to 127.0.0.1:22
	rtcp expose -dp dp.example.com:9000 -name pi-7 -to 127.0.0.1:22 -tls -token-file /etc/rtcp/pi-7.token
	rtcp expose -dp dp.example.com:9000 -config /etc/rtcp/expose.json -tls`)
	dp := fs.String("dp", "", "`address` of the discover point, host:port, or ws://host:port/rtcp to reach it over a WebSocket (required)")
	name := fs.String("name", "", "the `name` clients reach this server by (required, unless -config)")
	to := fs.String("to", "", "`host:port` of the TCP service to carry sessions to (required, unless -config)")
	transport := transportVar(fs, "`kind` of links to the DP: json (the Plan5 protocol), yamux (one multiplexed link, faster) or tcp (a TCP connection per session that the DP splices: the fastest); "+
		"default: the fastest the DP offers, tcp, else yamux, else json (a plain Plan5 DP)")
	pool := fs.Int("pool", 1, "number of links to keep to the DP")
	windowMemory := windowMemoryFlag(fs)
	failFast := fs.Bool("fail-fast", false, "exit at once if the DP cannot be reached at start, instead of dialling it again until it can")
	config := fs.String("config", "", "JSON `file` of several services to expose in one process, instead of -name and -to: "+
		`{"services": [{"name": "NAME", "to": "HOST:PORT"}, ...]}, each with optional "transport", "pool" and "token_file" (docs/cli.md)`)
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "longest `wait` between two attempts to reach the DP, at start and after a lost link (the waits start at 100ms and double, with jitter)")
	lostNameTimeout := fs.Duration("lost-name-timeout", defaultLostNameTimeout, "after another server took the name (while the links were down), exit with status 6 if it is not taken back within this `duration`; 0: keep trying")
	proxyProto := fs.String("proxy-protocol", "", "send each session's client address (as the DP saw it) to the service first, in a PROXY protocol header of `version` v1 (text) or v2 (binary), for nginx (listen ... proxy_protocol), HAProxy (accept-proxy) and the like")
	direct := fs.Bool("direct", false, "take part in direct sessions: a client that asks (connect -direct) is met through the NATs if it can be, and its session skips the DP's relay; "+
		"the direct path is not encrypted, so -tls turns it off (docs/direct.md)")
	logger := logFlags(fs, stderr)
	sec := securityFlags(fs, false)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := checkServiceFlags(fs, *config); err != nil {
		return err
	}
	if err := checkDP(fs, *dp); err != nil {
		return err
	}
	if *pool < 1 {
		return usageErrorf(fs, "-pool must be at least 1")
	}
	if err := checkName(fs, "name", *name, false); *name != "" && err != nil {
		return err
	}
	if *windowMemory < 1 {
		return usageErrorf(fs, "-window-memory must be at least 1 (MiB)")
	}
	if *maxBackoff <= 0 {
		return usageErrorf(fs, "-max-backoff must be positive")
	}
	if *lostNameTimeout < 0 {
		return usageErrorf(fs, "-lost-name-timeout must be 0 (keep trying) or positive")
	}
	proxyVersion, err := proxyProtocolVersion(fs, *proxyProto)
	if err != nil {
		return err
	}
	log := logger()
	tlsCfg, err := sec.tlsConfig(fs, log)
	if err != nil {
		return err
	}
	cred, err := sec.peerCredential(log)
	if err != nil {
		return err
	}

	lc := rtcp.ListenConfig{Transport: *transport, PoolSize: *pool, Logger: log, TLSConfig: tlsCfg, Credential: cred, WindowMemory: *windowMemory << 20,
		ManualAck: true, // a session is accepted once -to has answered (forward)
		WaitForDP: !*failFast, MaxBackoff: *maxBackoff, Direct: *direct}
	dpAddr, dial := dpDialer(*dp) // a ws:// URL: links over a WebSocket
	lc.Dial = dial
	if *config != "" {
		return exposeServices(ctx, *config, lc, *dp, dpAddr, transportsToTry(fs, *transport), *maxBackoff, tlsCfg != nil, log)
	}
	defer ignoreHangup(log)()
	ctx, watch := watchName(ctx, *name, *lostNameTimeout, log)
	defer watch.stop()
	lc.OnEvent = watch.onEvent
	l, t, err := listenFastest(ctx, lc, transportsToTry(fs, *transport), dpAddr, *name, log)
	if err != nil && ctx.Err() != nil {
		return nil // stopped while waiting for the DP
	}
	if err != nil {
		return listenError(err, *dp, *name, t, tlsCfg != nil)
	}
	ready(log, "rtcp expose: serving", "addr", l.Addr().String(), "to", *to, "transport", t.String())
	return watch.result(ctx, forwardConns(ctx, l, dialService(*to, proxyVersion), log.With("to", *to)))
}

// listenError explains why Listen failed, on one line.
func listenError(err error, dp, name string, t rtcp.Transport, tlsOn bool) error {
	if errors.Is(err, rtcp.ErrNotImplemented) {
		return wrapf(err, "-transport %v is not implemented yet; use json", t)
	}
	if errors.Is(err, rtcp.ErrTransportNotOffered) {
		return wrapf(err, "DP %s does not offer -transport %v; leave -transport out for the fastest it offers", dp, t)
	}
	return explainDP(err, dp, fmt.Sprintf("name %q", name), tlsOn)
}
