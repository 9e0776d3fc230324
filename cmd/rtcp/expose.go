package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"rtcp"
)

func runExpose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("expose", "expose -dp ADDR -name NAME -to HOST:PORT [-transport json|yamux|tcp] [-pool N] [-window-memory MiB] [-fail-fast] [-max-backoff DURATION] [-tls] [-tls-ca FILE] [-token-file FILE] [-log-level LEVEL] [-log-format text|json]", `
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

Examples:

	rtcp expose -dp dp.example.com:9000 -name pi-7 -to 127.0.0.1:22
	rtcp expose -dp dp.example.com:9000 -name pi-7 -to 127.0.0.1:22 -tls -token-file /etc/rtcp/pi-7.token
	rtcp expose -dp 127.0.0.1:9000 -name web -to 127.0.0.1:8080 -fail-fast`)
	dp := fs.String("dp", "", "`address` of the discover point, host:port, or ws://host:port/rtcp to reach it over a WebSocket (required)")
	name := fs.String("name", "", "the `name` clients reach this server by (required)")
	to := fs.String("to", "", "`host:port` of the TCP service to carry sessions to (required)")
	transport := transportVar(fs, "`kind` of links to the DP: json (the Plan5 protocol, the default), yamux (one multiplexed link, faster) or tcp (a TCP connection per session that the DP splices: the fastest)")
	pool := fs.Int("pool", 1, "number of links to keep to the DP")
	windowMemory := windowMemoryFlag(fs)
	failFast := fs.Bool("fail-fast", false, "exit at once if the DP cannot be reached at start, instead of dialling it again until it can")
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "longest `wait` between two attempts to reach the DP, at start and after a lost link (the waits start at 100ms and double, with jitter)")
	logger := logFlags(fs, stderr)
	sec := securityFlags(fs, false)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "dp", "name", "to"); err != nil {
		return err
	}
	if err := checkDP(fs, *dp); err != nil {
		return err
	}
	if err := checkHostPort(fs, "to", *to, "127.0.0.1:22"); err != nil {
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
	log := logger()
	tlsCfg, err := sec.tlsConfig(fs, stderr)
	if err != nil {
		return err
	}
	cred, err := sec.peerCredential(stderr)
	if err != nil {
		return err
	}

	lc := rtcp.ListenConfig{Transport: *transport, PoolSize: *pool, Logger: log, TLSConfig: tlsCfg, Credential: cred, WindowMemory: *windowMemory << 20,
		ManualAck: true, // a session is accepted once -to has answered (forward)
		WaitForDP: !*failFast, MaxBackoff: *maxBackoff}
	dpAddr, dial := dpDialer(*dp) // a ws:// URL: links over a WebSocket
	lc.Dial = dial
	l, err := lc.Listen(ctx, dpAddr, *name)
	if err != nil && ctx.Err() != nil {
		return nil // stopped while waiting for the DP
	}
	if err != nil {
		return listenError(err, *dp, *name, *transport, tlsCfg != nil)
	}
	fmt.Fprintf(stderr, "rtcp expose: serving %s, carrying sessions to %s\n", l.Addr(), *to)
	d := net.Dialer{Timeout: 10 * time.Second}
	return forward(ctx, l, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", *to)
	}, log.With("to", *to))
}

// listenError explains why Listen failed, on one line.
func listenError(err error, dp, name string, t rtcp.Transport, tlsOn bool) error {
	if errors.Is(err, rtcp.ErrNotImplemented) {
		return wrapf(err, "-transport %v is not implemented yet; use json", t)
	}
	return explainDP(err, dp, fmt.Sprintf("name %q", name), tlsOn)
}
