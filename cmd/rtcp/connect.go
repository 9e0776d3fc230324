package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"rtcp"
	"rtcp/internal/backoff"
)

func runConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return connect(ctx, args, os.Stdin, stdout, stderr)
}

// connect is runConnect with stdin, for -stdio.
func connect(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", "connect -dp ADDR -name NAME -listen ADDR|-stdio [-transport json|yamux|tcp] [-direct] [-max-backoff DURATION] [-tls] [-tls-ca FILE] [-token-file FILE] [-log-level LEVEL] [-log-format text|json]", `
Run an indirect client: accept plain TCP connections on -listen and
carry each to the indirect server NAME through the discover point ADDR,
so that programs that know nothing of rtcp (ssh, psql, a browser) reach
it. The DP is dialled once per connection; a connection that cannot
reach NAME is closed and the reason logged. It runs until SIGINT or
SIGTERM. With -max-backoff, a session whose DP cannot be reached (the
connection is refused, no route, no such host) waits for it instead:
it is dialled again, after waits that start at 100ms and double up to
-max-backoff, until it can be or connect is stopped.

With -stdio instead of -listen, it carries one session on stdin and
stdout and exits when the session ends: the end of stdin is passed on
as a half-close, and the server's end makes it exit once what came
before is written to stdout. That is what ssh's ProxyCommand wants:

	ssh -o ProxyCommand="rtcp connect -stdio -dp DP:9000 -name pi-7" user@pi-7

or, for every host pi-* in ~/.ssh/config:

	Host pi-*
	    ProxyCommand rtcp connect -stdio -dp DP:9000 -name %h

ssh keys the host key it remembers on the host name you give it (pi-7),
not on an address, so each name keeps its own key and HostKeyAlias is
not needed. (It is with -listen, where every server reached that way is
127.0.0.1 to ssh: add -o HostKeyAlias=pi-7 there.)

Exit status with -stdio: 0 the session ended (or SIGINT or SIGTERM
ended it), 3 the DP or the server refused it (no server of that name,
not authorized, the server cannot reach its service), 4 the DP could
not be reached or did not complete the handshake, 5 the session was cut
off (lost link, DP or server gone), 2 a usage error, 1 anything else.

Examples:

	rtcp connect -stdio -dp dp.example.com:9000 -name pi-7
	rtcp connect -dp dp.example.com:9000 -name pi-7 -listen 127.0.0.1:2222
	rtcp connect -dp dp.example.com:9000 -name web -listen 127.0.0.1:8080 -tls -token-file ~/.rtcp/laptop.token`)
	dp := fs.String("dp", "", "`address` of the discover point, host:port, or ws://host:port/rtcp to reach it over a WebSocket (required)")
	name := fs.String("name", "", "`name` of the server to reach, or of a seed door's device such as cccp:SERIAL (required)")
	listen := fs.String("listen", "", "local TCP `address` to accept connections on, e.g. 127.0.0.1:2222 (this or -stdio is required)")
	stdio := fs.Bool("stdio", false, "carry one session on stdin and stdout instead of accepting connections, and exit when it ends (for ssh's ProxyCommand)")
	maxBackoff := fs.Duration("max-backoff", 0, "if positive, dial a DP that cannot be reached again, waiting at most this `long` between two attempts, instead of giving the session up at once")
	transport := transportVar(fs, "`kind` of connection to the DP: json (Plan5 Data messages), or yamux or tcp (either: raw bytes after the handshake; faster); "+
		"default: raw bytes if the DP offers them, else json (a plain Plan5 DP)")
	direct := fs.Bool("direct", false, "ask for direct sessions: each starts on the DP's relay at once and moves to a direct connection through the NATs if one comes up within about a second, else stays relayed, with no error either way; the server must run expose -direct, and the DP broker it; the direct path is not encrypted, so -tls turns it off (docs/direct.md)")
	logger := logFlags(fs, stderr)
	sec := securityFlags(fs, false)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "dp", "name"); err != nil {
		return err
	}
	if *stdio && *listen != "" {
		return usageErrorf(fs, "-listen and -stdio exclude each other")
	}
	if !*stdio && *listen == "" {
		return usageErrorf(fs, "-listen is required, or -stdio for one session on stdin and stdout")
	}
	if err := checkDP(fs, *dp); err != nil {
		return err
	}
	if err := checkName(fs, "name", *name, true); err != nil {
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

	d := rtcp.Dialer{Transport: clientTransport(fs, *transport), Logger: log, TLSConfig: tlsCfg, Credential: cred, Direct: *direct}
	dpAddr, dial := dpDialer(*dp) // a ws:// URL: the DP over a WebSocket
	d.Dial = dial
	dialName := func(ctx context.Context) (net.Conn, error) {
		for failures := 1; ; failures++ {
			c, err := d.DialContext(ctx, dpAddr, *name)
			if err == nil || ctx.Err() != nil {
				return c, err
			}
			var op *net.OpError
			if *maxBackoff <= 0 || !isDial(err, &op) {
				return nil, explainDP(err, *dp, fmt.Sprintf("the session to %q", *name), tlsCfg != nil)
			}
			wait := backoff.Delay(failures, 100*time.Millisecond, *maxBackoff)
			log.Warn("cannot reach DP; retrying", "dp", *dp, "err", op.Err, "retry_in", wait)
			if err := backoff.Sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
	if *stdio {
		return carryStdio(ctx, dialName, stdin, stdout, log)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ready(log, "rtcp connect: listening", "addr", l.Addr().String(), "to", *name+"@"+*dp)
	return forward(ctx, l, dialName, log.With("to", *name+"@"+*dp))
}
