package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"rtcp/tcpipe"
)

// portsFlag is tcpipe's -p PORT[,PORT...].
type portsFlag struct{ ports []uint16 }

func (f *portsFlag) String() string {
	s := make([]string, len(f.ports))
	for i, p := range f.ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func (f *portsFlag) Set(v string) error {
	f.ports = f.ports[:0]
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port from 1 to 65535; want PORT[,PORT...]", s)
		}
		for _, p := range f.ports {
			if p == uint16(n) {
				return fmt.Errorf("port %d is given twice", n)
			}
		}
		f.ports = append(f.ports, uint16(n))
	}
	return nil
}

func runTCPipe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tcpipe", "tcpipe (-s PORT | -c HOST:PORT) [-p PORT[,PORT...]] [-t TARGET] [-b ADDR] [-stall-timeout DURATION] [-log-level LEVEL]", `
Run a tcpipe instance, compatible with the original tcpipe. Two instances
share one TCP connection: the server (-s, --server) accepts it and the
client (-c, --client) dials it, and dials again for ever when it drops. A
user application that connects to one of an instance's ports (-p,
--ports) makes the other instance connect to its target (-t, --target)
on the same port, and the two connections are joined. Each port carries
one connection at a time; a failed connection to the target closes the
user's; losing the partner closes every user connection. -b (an
addition to the original) is the local address on which the ports accept
user applications, default all addresses. The wire has no flow control:
a connection that reads slowly holds the partner back, and the link's
other connections wait with it, for at most -stall-timeout if it reads
nothing. It runs until SIGINT or SIGTERM.

Example (the original's): on host1 "rtcp tcpipe -s 50000 -p 40000,40001",
on host2 "rtcp tcpipe -c host1:50000 -t appli2": a connection to
host1:40000 reaches appli2:40000.`)
	var server, client, target, bind string
	var ports portsFlag
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
	fs.StringVar(&bind, "b", "", "the local `address` on which the ports accept user applications (default: all)")
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

	if client != "" {
		c := &tcpipe.Client{Server: client, Ports: ports.ports, Bind: bind, Target: target, StallTimeout: *stall, Logger: log}
		fmt.Fprintf(stderr, "rtcp tcpipe: serving as client of %s, ports %s, target %q\n", client, ports.String(), target)
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
	srv := &tcpipe.Server{Ports: ports.ports, Bind: bind, Target: target, StallTimeout: *stall, Logger: log}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(stderr, "rtcp tcpipe: listening on %s for the client instance, ports %s, target %q\n", l.Addr(), ports.String(), target)
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
