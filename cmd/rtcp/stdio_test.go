package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp"
)

// stdioServers runs a DP and, behind it, the servers the -stdio tests
// reach: "echo" echoes until the client half-closes, then writes the
// trailer and closes; "bye" writes "bye\n" and closes without reading;
// "cut" writes "x" and aborts the session. It returns the DP's address.
func stdioServers(t *testing.T) string {
	t.Helper()
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0").addr
	var (
		wg sync.WaitGroup
		ls []net.Listener
	)
	t.Cleanup(func() {
		for _, l := range ls {
			l.Close()
		}
		wg.Wait()
	})
	serve := func(name string, handle func(c *rtcp.Conn)) {
		l, err := rtcp.Listen(dp, name)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					handle(c.(*rtcp.Conn))
				})
			}
		})
	}
	serve("echo", func(c *rtcp.Conn) {
		n, err := io.Copy(c, c)
		if err != nil {
			t.Errorf("echo server: %v", err)
			return
		}
		io.WriteString(c, trailer(int(n)))
	})
	serve("bye", func(c *rtcp.Conn) { io.WriteString(c, "bye\n") })
	serve("cut", func(c *rtcp.Conn) {
		io.WriteString(c, "x")
		c.Abort(errors.New("the test cuts the session"))
	})
	return dp
}

// A stdioCase is one run of "rtcp connect -stdio".
type stdioCase struct {
	name     string
	args     []string // after "connect -stdio"
	stdin    []byte
	keepOpen bool   // stdin does not end until connect has exited
	stdout   string // what must come out, exactly; "-": anything
	code     int
	stderr   string // the start of the one line on stderr; "": nothing
}

func stdioCases(dp, dead string) []stdioCase {
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	var cases []stdioCase
	for _, tr := range []string{"json", "yamux"} {
		cases = append(cases,
			stdioCase{name: "echo/" + tr, args: []string{"-dp", dp, "-name", "echo", "-transport", tr},
				stdin: msg, stdout: string(msg) + trailer(len(msg))},
			stdioCase{name: "empty/" + tr, args: []string{"-dp", dp, "-name", "echo", "-transport", tr},
				stdout: trailer(0)},
			stdioCase{name: "server ends first/" + tr, args: []string{"-dp", dp, "-name", "bye", "-transport", tr},
				keepOpen: true, stdout: "bye\n"},
			stdioCase{name: "cut/" + tr, args: []string{"-dp", dp, "-name", "cut", "-transport", tr},
				keepOpen: true, stdout: "-", code: exitCut, stderr: "rtcp connect: the session was cut off: "},
		)
	}
	return append(cases,
		stdioCase{name: "refused", args: []string{"-dp", dp, "-name", "ghost"},
			code: exitRefused, stderr: "rtcp connect: "},
		stdioCase{name: "unreachable", args: []string{"-dp", dead, "-name", "echo"},
			code: exitUnreachable, stderr: "rtcp connect: "},
		stdioCase{name: "with listen", args: []string{"-dp", dead, "-name", "echo", "-listen", "127.0.0.1:0"},
			code: 2, stderr: "rtcp connect: -listen and -stdio exclude each other"},
	)
}

// check compares what a run gave with what c wants.
func (c *stdioCase) check(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if code != c.code {
		t.Errorf("exit status %d, want %d; stderr: %q", code, c.code, stderr)
	}
	if c.stdout != "-" && stdout != c.stdout {
		t.Errorf("stdout: %d bytes ending %q, want %d ending %q",
			len(stdout), stdout[max(0, len(stdout)-40):], len(c.stdout), c.stdout[max(0, len(c.stdout)-40):])
	}
	if c.stderr == "" {
		if stderr != "" {
			t.Errorf("stderr: %q, want nothing", stderr)
		}
		return
	}
	if !strings.HasPrefix(stderr, c.stderr) || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr: %q, want one line starting %q", stderr, c.stderr)
	}
}

// TestConnectStdio runs "connect -stdio" in process: the same cases as
// TestConnectStdioBinary, without building the command.
func TestConnectStdio(t *testing.T) {
	dp := stdioServers(t)
	for _, c := range stdioCases(dp, closedPort(t)) {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang fails, not blocks
			defer cancel()
			stdin, feed := io.Pipe()
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				feed.Write(c.stdin)
				if !c.keepOpen {
					feed.Close()
				}
			}()
			var stdout, stderr bytes.Buffer
			args := append([]string{"-stdio"}, c.args...)
			code := finish(lookup("connect"), connect(ctx, args, stdin, &stdout, &stderr), &stderr)
			feed.CloseWithError(errors.New("the test is over")) // ends what is still feeding
			<-fed
			if ctx.Err() != nil {
				t.Fatal("connect -stdio did not end in a minute")
			}
			c.check(t, code, stdout.String(), stderr.String())
		})
	}
}

// TestConnectStdioBinary runs "rtcp connect -stdio" as ssh's
// ProxyCommand does: the built command, its stdin and stdout pipes.
func TestConnectStdioBinary(t *testing.T) {
	needSlow(t)
	bin := buildCommand(t)
	dp := stdioServers(t)
	for _, c := range stdioCases(dp, closedPort(t)) {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang fails, not blocks
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"connect", "-stdio"}, c.args...)...)
			stdin, feed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdin = stdin
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stdin.Close()
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				feed.Write(c.stdin) // fails once the command has exited
				if !c.keepOpen {
					feed.Close()
				}
			}()
			err = cmd.Wait()
			feed.Close()
			<-fed
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatal("rtcp connect -stdio did not end in a minute")
			}
			c.check(t, cmd.ProcessState.ExitCode(), stdout.String(), stderr.String())
		})
	}
}

// buildCommand builds the command, with the go build flags given, into
// a temporary directory and returns its path.
func buildCommand(t *testing.T, flags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	bin := filepath.Join(t.TempDir(), "rtcp")
	if out, err := exec.Command(goTool, append(append([]string{"build"}, flags...), "-o", bin, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
