package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"rtcp"
)

func runConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", "connect -dp ADDR -name NAME -listen ADDR [-transport json|yamux|tcp] [-tls] [-tls-ca FILE] [-token-file FILE] [-log-level LEVEL]", `
Run an indirect client: accept plain TCP connections on -listen and
carry each to the indirect server NAME through the discover point ADDR,
so that programs that know nothing of rtcp (ssh, psql, a browser) reach
it. The DP is dialled once per connection; a connection that cannot
reach NAME is closed and the reason logged. It runs until SIGINT or
SIGTERM.`)
	dp := fs.String("dp", "", "`address` of the discover point, host:port, or ws://host:port/rtcp to reach it over a WebSocket (required)")
	name := fs.String("name", "", "`name` of the server to reach (required)")
	listen := fs.String("listen", "", "local TCP `address` to accept connections on, e.g. 127.0.0.1:2222 (required)")
	transport := transportVar(fs, "`kind` of connection to the DP: json (Plan5 Data messages, the default), or yamux or tcp (either: raw bytes after the handshake; faster)")
	logger := logFlags(fs, stderr)
	sec := securityFlags(fs, false)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "dp", "name", "listen"); err != nil {
		return err
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

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "rtcp connect: listening on %s, carrying connections to %s@%s\n", l.Addr(), *name, *dp)
	d := rtcp.Dialer{Transport: *transport, Logger: log, TLSConfig: tlsCfg, Credential: cred}
	dpAddr, dial := dpDialer(*dp) // a ws:// URL: the DP over a WebSocket
	d.Dial = dial
	return forward(ctx, l, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, dpAddr, *name)
	}, log.With("to", *name+"@"+*dp))
}
