// Command rtcp runs the parts of an rtcp network: a discover point, an
// indirect server that exposes a local TCP service under a name, and a
// client side that carries local TCP connections to such a name.
//
// Run "rtcp help" for the list of subcommands and "rtcp help NAME" for one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// A command is one subcommand. run parses its own flags from args, runs
// until ctx ends or it fails, and writes only to stdout and stderr, so
// tests call it in process.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the dispatch table: a new subcommand is a file with its run
// function and one line here. The order is the order of "rtcp help".
var commands = []command{
	{"dp", "run a discover point that servers register with and clients dial", runDP},
	{"expose", "register a name at a DP and carry its sessions to a local TCP service", runExpose},
	{"connect", "accept local TCP connections and carry each to a named server through a DP", runConnect},
	{"bench", "measure rtcp beside raw TCP and plain relays on loopback, and print a table", runBench},
	{"c8y-agent", "open Cumulocity remote access tunnels for c8y_RemoteAccessConnect operations", runC8yAgent},
	{"cccp-device", "register a device with a CCCP proxy and carry its sessions to a local TCP service", runCCCPDevice},
	{"mihini-server", "accept a Mihini device's link and carry clients to services behind it", runMihiniServer},
	{"mihini-device", "dial a Mihini server side and carry its sessions to local services", runMihiniDevice},
	{"tcpipe", "run a tcpipe instance that carries TCP connections to its partner instance", runTCPipe},
	{"version", "print the version and source revision of this build", runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills at once instead of
	// waiting for a graceful shutdown.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit status: 0 on success, 2 for a usage error, 1 for any other
// unless the command says otherwise (connect -stdio).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				return finish(c, c.run(ctx, []string{"-h"}, stdout, stderr), stderr)
			}
			fmt.Fprintf(stderr, "rtcp help: unknown command %q; run 'rtcp help' for the list\n", args[1])
			return 2
		}
		usage(stdout)
		return 0
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "rtcp: unknown command %q; run 'rtcp help' for the list\n", args[0])
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	var ue *usageError
	if err != nil && !errors.Is(err, errHelp) && !errors.As(err, &ue) && jsonLogs(args[1:]) {
		// -log-format json: the failure is one more JSON line, so that
		// stderr holds nothing else. A usage error stays plain text.
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("rtcp "+c.name+": failed", "err", err.Error())
		return finish(c, err, io.Discard)
	}
	return finish(c, err, stderr)
}

// jsonLogs reports whether the command line args ask for -log-format
// json (the last -log-format given wins, as for the flag).
func jsonLogs(args []string) bool {
	json := false
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "log-format" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		json = value == "json"
	}
	return json
}

// finish reports err from c on one line of stderr and returns the exit
// status: 2 for a usageError, an exitError's own, or 1.
func finish(c *command, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "rtcp %s: %v\n", c.name, err)
	var ue *usageError
	var xe *exitError
	switch {
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &xe):
		return xe.code
	}
	return 1
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `rtcp makes a TCP server with no public address reachable through a
discover point (DP), a relay that both sides dial out to.

Usage:

	rtcp COMMAND [flags]

Commands:

`)
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-14s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "rtcp help COMMAND" (or "rtcp COMMAND -h") for a command's flags,
and "rtcp version" (or "rtcp -version") for the version of this build.

Example: make the SSH server of a machine behind NAT reachable as "pi-7":

	public-host$ rtcp dp -listen :9000
	pi-7$        rtcp expose -dp public-host:9000 -name pi-7 -to 127.0.0.1:22
	laptop$      ssh -o ProxyCommand="rtcp connect -stdio -dp public-host:9000 -name %h" pi-7

or, for a program that cannot run a command to connect, give it a local
port that leads to pi-7:

	laptop$      rtcp connect -dp public-host:9000 -name pi-7 -listen 127.0.0.1:2222
`)
}
