package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"rtcp"
	"rtcp/internal/bench"
)

func TestDPPortFlagErrors(t *testing.T) {
	for _, c := range []struct{ arg, want string }{
		{"pi-7", "want NAME=ADDR"},
		{"=:2222", "want NAME=ADDR"},
		{"pi-7=", "want NAME=ADDR"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"dp", "-listen", "127.0.0.1:0", "-port", c.arg}, io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("dp -port %q: status %d, stderr %q; want 2 and %q", c.arg, code, stderr.String(), c.want)
		}
	}
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"dp", "-listen", "127.0.0.1:0", "-port", "a=127.0.0.1:0", "-port", "b=127.0.0.1:0"}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `already given to "a"`) {
		t.Errorf("two -port with one address: status %d, stderr %q", code, stderr.String())
	}
}

// TestDPPort runs "rtcp dp -port" in process: a plain TCP client reaches
// the server named by the flag, half-close included.
func TestDPPort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stderr := newLines()
	done := make(chan error, 1)
	go func() {
		done <- runDP(ctx, []string{"-listen", "127.0.0.1:0", "-port", "db=127.0.0.1:0", "-log-level", "warn"}, io.Discard, stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dp: %v", err)
		}
	}()
	port := stderr.wait(t, regexp.MustCompile(`msg="rtcp dp: port" addr=(\S+) name=db`))
	dp := stderr.wait(t, logRe("rtcp dp: listening", "addr"))

	l, err := rtcp.Listen(dp, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	defer func() { l.Close(); <-served }()

	c, err := net.Dial("tcp", port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg := strings.Repeat("psql ", 20000)
	go func() {
		io.WriteString(c, msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through -port: %d bytes, %v; want %d bytes and EOF", len(got), err, len(msg))
	}
}

// TestBench runs tiny benches (the command path as processes of the
// built command) and checks the tables' shape, not their figures: one
// on loopback, and one at two round trips.
func TestBench(t *testing.T) {
	needSlow(t)
	if testing.Short() {
		t.Skip("builds the command and runs processes")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	bin := filepath.Join(t.TempDir(), "rtcp")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("loopback", func(t *testing.T) { testBench(t, bin) })
	t.Run("rtt", func(t *testing.T) { testBenchRTT(t, bin) })
}

// benchTable runs "rtcp bench args" with the binary bin and returns its
// output and the lines of its table.
func benchTable(t *testing.T, bin string, args ...string) (string, []string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"-exe", bin, "-duration", "50ms", "-repeat", "1", "-echoes", "20", "-dials", "5",
		"-sessions", "30", "-stalled", "5", "-pool", "2"}, args...)
	if err := runBench(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var table []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(l, "|") {
			table = append(table, l)
		}
	}
	if len(table) < 2 {
		t.Fatalf("no table:\n%s", stdout.String())
	}
	if want := "| " + strings.Join(bench.Columns, " | ") + " |"; table[0] != want {
		t.Errorf("header = %q, want %q", table[0], want)
	}
	for _, l := range table[2:] {
		if strings.Contains(l, "failed") {
			t.Errorf("a row failed: %s\nstderr:\n%s", l, stderr.String())
		}
		if n := strings.Count(l, "|") - 1; n != len(bench.Columns) {
			t.Errorf("row has %d cells, want %d: %s", n, len(bench.Columns), l)
		}
	}
	return stdout.String(), table
}

func testBench(t *testing.T, bin string) {
	transports := []string{"json", "yamux", "tcp"}
	out, table := benchTable(t, bin, "-transports", strings.Join(transports, ","))
	// raw, the limit, a command row per transport, the in-process limit,
	// a library row per transport.
	wantRows := 3 + 2*len(transports)
	if len(table) != 2+wantRows {
		t.Fatalf("table has %d lines, want a header, a separator and %d rows:\n%s", len(table), wantRows, out)
	}
	for _, tr := range transports {
		if !strings.Contains(out, "expose -transport "+tr) {
			t.Errorf("no command row for transport %s:\n%s", tr, out)
		}
	}
	for _, want := range []string{"Machine: ", "Load average", ", DP, ", ", relay, ", "5 stalled sessions"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The last cell: stalled sessions, held by every row but raw TCP's.
	stalled := regexp.MustCompile(`\| -?\d+\.\d, (DP|relay|process), 5 \|$`)
	for _, l := range table[3:] {
		if !stalled.MatchString(l) {
			t.Errorf("row lacks the memory of 5 stalled sessions: %s", l)
		}
	}
	if strings.Contains(out, "RTT") {
		t.Errorf("a bench without -rtt mentions round trips:\n%s", out)
	}
}

// testBenchRTT: with -rtt 0 -rtt 20ms each round trip gets a heading and
// its rows, and the echo of each row at 20 ms takes at least that.
func testBenchRTT(t *testing.T, bin string) {
	const rtt = 20 * time.Millisecond
	out, table := benchTable(t, bin, "-transports", "yamux,tcp", "-rows", "limit|yamux", "-rtt", "0", "-rtt", rtt.String())
	// Per round trip: a heading, raw, the limit, the yamux command row,
	// the in-process limit, the yamux library row.
	if len(table) != 2+2*6 {
		t.Fatalf("table has %d lines, want a header, a separator and 2 groups of 6:\n%s", len(table), out)
	}
	if !strings.HasPrefix(table[2], "| **RTT 0**") || !strings.HasPrefix(table[8], "| **RTT 20ms**") {
		t.Errorf("no heading for each round trip:\n%s", out)
	}
	for _, l := range table[9:] {
		cells := strings.Split(l, "|")
		var ms float64
		if _, err := fmt.Sscanf(strings.TrimSpace(cells[4]), "%f ms", &ms); err != nil || ms < float64(rtt/time.Millisecond) {
			t.Errorf("echo p50 at RTT %v: %q, want at least %v: %s", rtt, cells[4], rtt, l)
		}
		if !strings.HasSuffix(l, "| - | - |") {
			t.Errorf("memory measured at RTT %v: %s", rtt, l)
		}
	}
	if !strings.Contains(out, bench.LegendRTT) {
		t.Errorf("no legend for the round trips:\n%s", out)
	}
}
