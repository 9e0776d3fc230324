package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"rtcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slowTests names the environment variable that turns on the tests that
// build the command and run it as processes (TestBench, TestBinaryDP):
// they take minutes on a busy 2-core machine, so "go test ./..." leaves
// them out and .ci/run, which sets it, runs them.
const slowTests = "RTCP_TEST_SLOW"

// needSlow skips t unless $RTCP_TEST_SLOW is set.
func needSlow(t *testing.T) {
	t.Helper()
	if os.Getenv(slowTests) == "" {
		t.Skipf("builds the command and runs it as processes: set %s=1 to run it (.ci/run does)", slowTests)
	}
}

// readyLine matches the line a command logs once it is ready, in text or
// JSON, and captures the address it gives.
var readyLine = regexp.MustCompile(`msg"?[=:]"rtcp [\w-]+: (?:listening|serving)[^"]*"(?:[ ,]"?addr"?[=:]"?([^\s",]+))?`)

// logRe matches a text log line whose message is msg and captures the
// value of its attribute key.
func logRe(msg, key string) *regexp.Regexp {
	return regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `"(?: .*)? ` + regexp.QuoteMeta(key) + `=(\S+)`)
}

// output collects what a command writes and reports its readiness line.
type output struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	ready   chan string
}

func newOutput() *output { return &output{ready: make(chan string, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		if m := readyLine.FindSubmatch(o.partial[:i]); m != nil {
			select {
			case o.ready <- string(m[1]):
			default:
			}
		}
		o.partial = o.partial[i+1:]
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}

// A proc is a command running in process.
type proc struct {
	addr string        // from its readiness line
	out  *output       // its stderr
	done chan struct{} // closed when it has returned
	err  error         // what it returned, once done is closed
}

type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// launch runs fn with args until the test ends or it fails, and waits
// until it is ready. It returns the error of a command that ends before
// it is ready.
func launch(t *testing.T, fn runFunc, args ...string) (*proc, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{out: newOutput(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = fn(ctx, args, io.Discard, p.out)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if p.err != nil {
			t.Errorf("%v returned %v after cancel; output:\n%s", args, p.err, p.out)
		}
	})
	select {
	case p.addr = <-p.out.ready:
		return p, nil
	case <-p.done:
		if p.err == nil {
			p.err = errors.New("ended before it was ready")
		}
		err := p.err
		p.err = nil // reported here, not again at cleanup
		return nil, err
	case <-time.After(30 * time.Second):
		t.Fatalf("%v not ready after 30s; output:\n%s", args, p.out)
	}
	return nil, nil
}

func mustLaunch(t *testing.T, fn runFunc, args ...string) *proc {
	t.Helper()
	p, err := launch(t, fn, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return p
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUsageErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dead := closedPort(t)
	tests := []struct {
		name string
		args []string
		code int
		want string // the start of the one line on stderr
	}{
		{"unknown command", []string{"frobnicate"}, 2, `rtcp: unknown command "frobnicate"`},
		{"unknown flag", []string{"dp", "-bogus"}, 2, "rtcp dp: flag provided but not defined: -bogus"},
		{"missing listen", []string{"dp"}, 2, "rtcp dp: -listen is required"},
		{"stray argument", []string{"dp", "-listen", "127.0.0.1:0", "now"}, 2, `rtcp dp: unexpected argument "now"`},
		{"bad log level", []string{"dp", "-listen", "127.0.0.1:0", "-log-level", "loud"}, 2, `rtcp dp: invalid value "loud" for flag -log-level`},
		{"bad grace", []string{"dp", "-listen", "127.0.0.1:0", "-grace", "soon"}, 2, `rtcp dp: invalid value "soon" for flag -grace`},
		{"missing name", []string{"expose", "-dp", dead, "-to", dead}, 2, "rtcp expose: -name is required"},
		{"bad transport", []string{"expose", "-dp", dead, "-name", "x", "-to", dead, "-transport", "pigeon"}, 2, `rtcp expose: invalid value "pigeon" for flag -transport: want json, yamux or tcp`},
		{"bad pool", []string{"expose", "-dp", dead, "-name", "x", "-to", dead, "-pool", "0"}, 2, "rtcp expose: -pool must be at least 1"},
		{"connect missing listen", []string{"connect", "-dp", dead, "-name", "x"}, 2, "rtcp connect: -listen is required"},
		{"help unknown", []string{"help", "frobnicate"}, 2, `rtcp help: unknown command "frobnicate"`},
		{"unreachable DP", []string{"expose", "-dp", dead, "-name", "x", "-to", dead, "-fail-fast"}, 1, "rtcp expose: cannot reach DP " + dead + ": "},
		{"address in use", []string{"dp", "-listen", busy.Addr().String()}, 1, "rtcp dp: listen tcp " + busy.Addr().String() + ": "},
		{"connect address in use", []string{"connect", "-dp", dead, "-name", "x", "-listen", busy.Addr().String()}, 1, "rtcp connect: listen tcp "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q, want nothing", stdout.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
				t.Errorf("stderr is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("stderr = %q, want it to start with %q", msg, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		onStderr   bool
		wantPrefix string
	}{
		{nil, 2, true, "rtcp makes"},
		{[]string{"help"}, 0, false, "rtcp makes"},
		{[]string{"-h"}, 0, false, "rtcp makes"},
		{[]string{"--help"}, 0, false, "rtcp makes"},
		{[]string{"help", "dp"}, 0, false, "Usage: rtcp dp -listen ADDR"},
		{[]string{"expose", "-h"}, 0, false, "Usage: rtcp expose -dp ADDR -name NAME -to HOST:PORT"},
		{[]string{"connect", "-help"}, 0, false, "Usage: rtcp connect -dp ADDR -name NAME -listen ADDR"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"rtcp"}, tt.args...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			got, other := stdout.String(), stderr.String()
			if tt.onStderr {
				got, other = other, got
			}
			if other != "" {
				t.Errorf("usage also went to the other stream: %q", other)
			}
			if !strings.HasPrefix(got, tt.wantPrefix) {
				t.Errorf("usage = %q, want it to start with %q", got, tt.wantPrefix)
			}
			if tt.wantPrefix == "rtcp makes" {
				for _, c := range commands {
					if !strings.Contains(got, "\t"+c.name+" ") {
						t.Errorf("usage does not list %q", c.name)
					}
				}
			}
		})
	}
}

// TestBinaryDP builds the command, runs "rtcp dp", and sends it SIGTERM
// while a session is open: the session goes on until it is closed, then
// the DP exits with status 0.
func TestBinaryDP(t *testing.T) {
	needSlow(t)
	if testing.Short() {
		t.Skip("builds the command")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	bin := filepath.Join(t.TempDir(), "rtcp")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "dp", "-listen", "127.0.0.1:0", "-grace", "1m", "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // if the test fails before Wait
	lines := bufio.NewScanner(stderr)
	var log strings.Builder
	var msgs []string // of every record read
	// next reads stderr's next record, and returns false at its end.
	next := func() (map[string]any, bool) {
		t.Helper()
		if !lines.Scan() {
			return nil, false
		}
		log.WriteString(lines.Text() + "\n")
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Errorf("a line that is not JSON: %q", lines.Text())
		}
		msg, _ := m["msg"].(string)
		msgs = append(msgs, msg)
		return m, true
	}
	// waitFor reads stderr up to a record whose message is msg.
	waitFor := func(msg string) map[string]any {
		t.Helper()
		for {
			m, ok := next()
			if !ok {
				break
			}
			if m["msg"] == msg {
				return m
			}
		}
		t.Fatalf("no record %q; stderr:\n%s", msg, log.String())
		return nil
	}
	dp, _ := waitFor("rtcp dp: listening")["addr"].(string)

	l, err := rtcp.Listen(dp, "echo")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	defer func() {
		l.Close()
		<-served
	}()
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	c, err := rtcp.Dial(dp, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %q, %v; want %q", buf, err, msg)
		}
	}
	roundTrip("before SIGTERM")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("rtcp dp: shutting down")
	roundTrip("during the grace period")
	c.Close()
	l.Close()

	waitFor("rtcp dp: stopped")
	for {
		if _, ok := next(); !ok {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rtcp dp after SIGTERM: %v; stderr:\n%s", err, log.String())
	}
	if slices.Contains(msgs, "rtcp dp: grace period over; cut the sessions still open") {
		t.Errorf("the DP waited out its grace period instead of ending with the last session:\n%s", log.String())
	}
}

// lines is a goroutine-safe writer that sends each complete line it gets
// to a channel (dropping lines nobody waits for) and keeps them all.
type lines struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	ch      chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 64)} }

func (w *lines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.ch <- string(w.partial[:i]):
		default:
		}
		w.partial = w.partial[i+1:]
	}
}

// wait returns the first submatch of the first line matching re.
func (w *lines) wait(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l := <-w.ch:
			if m := re.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		case <-timeout:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no line matching %q in a minute; got:\n%s", re, w.all.String())
		}
	}
}
