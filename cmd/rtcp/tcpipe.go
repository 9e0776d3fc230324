package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"rtcp/tcpipe"
)

// portsFlag is tcpipe's -p PORT[,PORT...]; with ranges, -target-ports,
// which also takes LOW-HIGH.
type portsFlag struct {
	ports  []uint16
	ranges bool
}

func (f *portsFlag) String() string {
	s := make([]string, len(f.ports))
	for i, p := range f.ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func (f *portsFlag) Set(v string) error {
	f.ports = f.ports[:0]
	seen := make(map[uint16]bool)
	for _, s := range strings.Split(v, ",") {
		lo, hi, ok := strings.Cut(s, "-")
		if !ok || !f.ranges {
			lo, hi = s, s
		}
		a, b := parsePort(lo), parsePort(hi)
		if a == 0 || b == 0 || a > b {
			if f.ranges {
				return fmt.Errorf("%q is not a port or a range of ports from 1 to 65535; want PORT or LOW-HIGH, separated by commas", s)
			}
			return fmt.Errorf("%q is not a port from 1 to 65535; want PORT[,PORT...]", s)
		}
		for p := a; ; p++ {
			if seen[p] {
				return fmt.Errorf("port %d is given twice", p)
			}
			seen[p] = true
			f.ports = append(f.ports, p)
			if p == b {
				break
			}
		}
	}
	return nil
}

// parsePort returns the port s names, or 0.
func parsePort(s string) uint16 {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return uint16(n)
}

func runTCPipe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tcpipe", "tcpipe (-s PORT | -c HOST:PORT) [-p PORT[,PORT...]] [-t TARGET] [-target-ports PORTS] [-secret-file FILE] [-b ADDR] [-first-data-hold DURATION] [-stall-timeout DURATION] [-log-level LEVEL]", `
Run a tcpipe instance, compatible with the original tcpipe. Two instances
share one TCP connection: the server (-s, --server) accepts it and the
client (-c, --client) dials it, and dials again for ever when it drops. A
user application that connects to one of an instance's ports (-p,
--ports) makes the other instance connect to its target (-t, --target)
on the same port, and the two connections are joined. Each port carries
one connection at a time; a failed connection to the target closes the
user's; losing the partner closes every user connection. The partner
reaches only the ports of the target in -target-ports (default: those of
-p; if -p is empty too, any port, with a warning in server mode).

Without a secret, as with the original, whoever connects first to the
server is its partner, and a second partner is refused while the first is
up (the link is probed: a vanished partner is noticed within about 30 s).
With -secret-file on both instances (an addition to the original, which
cannot be the partner of an instance that has one), each proves to the
other that it holds the file's secret before the link is used, and a
partner that proves it replaces the link before it. The secret must be at
least 16 bytes: head -c 32 /dev/urandom | base64 > FILE. It does not
encrypt the link: carry the link over TLS, SSH or a VPN where others can
see or change it.

-b (an addition to the original) is the local address on which the ports
accept user applications, default all addresses. A user's first bytes wait
up to -first-data-hold for the partner to answer its Connect, so that an
original partner whose target refused gets no Data for it (it exits if it
does); there is no wait with -secret-file. A user that connects just
after the port's last connection ended is held (at most 200 ms) until the
partner can send nothing more for the old one. The wire has no flow control:
a connection that reads slowly holds the partner back, and the link's
other connections wait with it, for at most -stall-timeout if it reads
nothing. It runs until SIGINT or SIGTERM.

Examples (the original's): on host1 and host2, so that a connection to
host1:40000 reaches appli2:40000, and the same with a shared secret:

	rtcp tcpipe -s 50000 -p 40000,40001
	rtcp tcpipe -c host1:50000 -t appli2
	rtcp tcpipe -c host1:50000 -t appli2 -secret-file /etc/rtcp/tcpipe.secret`)
	var server, client, target, bind, secretFile string
	var ports portsFlag
	targetPorts := portsFlag{ranges: true}
	for _, name := range []string{"s", "server"} {
		fs.StringVar(&server, name, "", "server mode: the `port` (or host:port) to accept the client instance on")
	}
	for _, name := range []string{"c", "client"} {
		fs.StringVar(&client, name, "", "client mode: the `host:port` of the server instance")
	}
	for _, name := range []string{"p", "ports"} {
		fs.Var(&ports, name, "`PORT[,PORT...]`: the ports on which to accept user applications")
	}
	for _, name := range []string{"t", "target"} {
		fs.StringVar(&target, name, "", "the `host` to connect to for the partner's user connections")
	}
	fs.Var(&targetPorts, "target-ports", "`PORTS`: the ports of the target the partner may reach, PORT or LOW-HIGH, separated by commas (default: -p's)")
	fs.StringVar(&secretFile, "secret-file", "", "`file` holding the secret shared with the partner instance, at least 16 bytes (surrounding white space is ignored); the partner must hold the same")
	fs.StringVar(&bind, "b", "", "the local `address` on which the ports accept user applications (default: all)")
	hold := fs.Duration("first-data-hold", 100*time.Millisecond, "how long a user's first bytes may wait for the partner to answer its Connect (Data, or Disconnect if its target refused); 0: no wait")
	stall := stallFlag(fs)
	logger := logFlags(fs, stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if (server == "") == (client == "") {
		return usageErrorf(fs, "give one of -s PORT (server) and -c HOST:PORT (client)")
	}
	if len(ports.ports) == 0 && target == "" {
		return usageErrorf(fs, "give -p PORTS, -t TARGET or both: an instance with neither carries nothing")
	}
	log := logger()
	var secret []byte
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return fmt.Errorf("-secret-file: %w", err)
		}
		if secret = bytes.TrimSpace(b); len(secret) < 16 {
			return fmt.Errorf("-secret-file %s holds %d bytes; a secret must be at least 16 random bytes: head -c 32 /dev/urandom | base64 > %s", secretFile, len(secret), secretFile)
		}
		warnIfShared(secretFile, "-secret-file", log)
	}
	if *hold <= 0 {
		*hold = -1 // the library's "no wait"
	}

	if client != "" {
		c := &tcpipe.Client{Server: client, Ports: ports.ports, Bind: bind, Target: target, TargetPorts: targetPorts.ports,
			Secret: secret, FirstDataHold: *hold, StallTimeout: *stall, Logger: log}
		ready(log, "rtcp tcpipe: serving as client", "server", client, "ports", ports.String(), "target", target)
		err := c.DialAndServe(ctx)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	}

	addr := server
	if _, err := strconv.Atoi(server); err == nil {
		addr = ":" + server
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &tcpipe.Server{Ports: ports.ports, Bind: bind, Target: target, TargetPorts: targetPorts.ports,
		Secret: secret, FirstDataHold: *hold, StallTimeout: *stall, Logger: log}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	ready(log, "rtcp tcpipe: listening", "addr", l.Addr().String(), "ports", ports.String(), "target", target)
	select {
	case err := <-served:
		srv.Close()
		return err // a port that cannot be listened on, say
	case <-ctx.Done():
	}
	srv.Close()
	<-served
	return nil
}
