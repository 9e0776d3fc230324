package bench

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"rtcp/internal/delay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needSlow skips t unless $RTCP_TEST_SLOW is set: a test that runs a
// measurement of "rtcp bench" for real takes up to half a minute on a
// busy 2-core machine, so "go test ./..." leaves it out and .ci/run,
// which sets the variable, runs it.
func needSlow(t *testing.T) {
	t.Helper()
	if os.Getenv("RTCP_TEST_SLOW") == "" {
		t.Skip("runs a bench measurement: set RTCP_TEST_SLOW=1 to run it (.ci/run does)")
	}
}

// serve runs serve on a loopback listener until the test ends.
func serve(t *testing.T, serve func(net.Listener) error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(l)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

// TestLoad runs every measurement of the load generator against the sink,
// directly, behind two reference relays (which must pass the half-close
// on, or throughput never gets its answer), and behind the two with a
// delay link between them, as at "rtcp bench -rtt 10ms".
func TestLoad(t *testing.T) {
	const rtt = 10 * time.Millisecond
	sink := serve(t, Serve)
	r2 := serve(t, func(l net.Listener) error { return Relay(l, sink) })
	r1 := serve(t, func(l net.Listener) error { return Relay(l, r2) })
	link := &delay.Relay{To: r2, RTT: rtt}
	slow := serve(t, link.Serve)
	r1slow := serve(t, func(l net.Listener) error { return Relay(l, slow) })
	paths := map[string]string{"direct": sink, "two relays": r1, "two relays, delay link between": r1slow}
	for name, addr := range paths {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dial := tcpDialer(addr)
			for _, conns := range []int{1, 3} {
				rate, err := throughput(ctx, dial, conns, 20*time.Millisecond)
				if err != nil || rate <= 0 {
					t.Fatalf("throughput with %d connections: %v B/s, %v", conns, rate, err)
				}
			}
			rtts, err := echo(ctx, dial, 20)
			if err != nil || len(rtts) != 20 || percentile(rtts, 50) <= 0 {
				t.Fatalf("echo: %d round trips, %v", len(rtts), err)
			}
			ds, err := dialFirstByte(ctx, dial, 5)
			if err != nil || len(ds) != 5 {
				t.Fatalf("dial to first byte: %d dials, %v", len(ds), err)
			}
			if addr == r1slow && (rtts[0] < rtt || ds[0] < rtt) {
				t.Errorf("through a delay link of RTT %v: echo %v, dial to first byte %v; want at least the RTT", rtt, rtts[0], ds[0])
			}
			var s held
			defer s.close()
			if err := s.add(ctx, dial, 50); err != nil || len(s.conns) != 50 {
				t.Fatalf("idle: %d sessions, %v", len(s.conns), err)
			}
		})
	}
}

// TestFlood: in flood mode the sink writes until the client goes, and a
// held stalled session gets a small receive buffer and is flooded.
func TestFlood(t *testing.T) {
	sink := serve(t, Serve)
	c, err := open(context.Background(), tcpDialer(sink))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{modeFlood}); err != nil {
		t.Fatal(err)
	}
	const want = 4 << 20
	n, err := io.CopyN(io.Discard, c, want)
	if err != nil {
		t.Fatalf("flood: %d bytes, %v; want %d", n, err, want)
	}

	s := held{stalled: true}
	defer s.close()
	if err := s.add(context.Background(), tcpDialer(sink), 3); err != nil || len(s.conns) != 3 {
		t.Fatalf("stalled: %d sessions, %v", len(s.conns), err)
	}
	// What the small receive buffer holds has arrived. (No more: once
	// it is full, the kernel lets the flood in slowly.)
	buf := make([]byte, 2048)
	for _, c := range s.conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("a stalled session's flood: %d bytes, %v", n, err)
		}
	}
}

// TestStalled measures stalled sessions on a path of its own, as "rtcp
// bench" does after each row's other figures, through the in-process
// limit and an in-process rtcp path.
func TestStalled(t *testing.T) {
	needSlow(t)
	b := &runner{cfg: Config{Stalled: 5, Library: testLibrary}, self: os.Getpid()}
	if err := b.cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []spec{
		{name: rowLibLimit, start: b.startLibLimit},
		{name: "rtcp yamux, in process", start: func(ctx context.Context, _ string, rtt time.Duration) (*setup, error) {
			return b.startLibrary(ctx, rtt, "yamux")
		}},
	} {
		t.Run(s.name, func(t *testing.T) {
			row := &Row{Name: s.name}
			if err := b.runStalled(context.Background(), s, "", row); err != nil {
				t.Fatal(err)
			}
			if row.StalledSessions != 5 || row.MemOf != "process" {
				t.Errorf("%d stalled sessions, memory of %q; want 5 and \"process\"", row.StalledSessions, row.MemOf)
			}
		})
	}
}

// TestThroughputNeedsHalfClose: a path that does not pass the half-close
// on fails the throughput run instead of hanging.
func TestThroughputNeedsHalfClose(t *testing.T) {
	sink := serve(t, Serve)
	// A relay that never passes the client's end on.
	deaf := serve(t, func(l net.Listener) error {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			d, err := net.Dial("tcp", sink)
			if err != nil {
				c.Close()
				return err
			}
			conns = append(conns, c, d)
			go func() { // the greeting, then the bytes but not their end
				var b [1]byte
				d.Read(b[:])
				c.Write(b[:])
				io.Copy(d, c)
			}()
		}
	})
	c, err := open(context.Background(), tcpDialer(deaf))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{modeThroughput}); err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(10 * time.Millisecond)
	c.SetDeadline(stop.Add(time.Second))
	_, err = sendUntil(c, stop, time.Second)
	if err == nil || !strings.Contains(err.Error(), "half-close") {
		t.Fatalf("send through a path that drops the half-close: %v, want an error that says so", err)
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i + 1)
	}
	for _, c := range []struct{ p, want int }{{50, 51}, {99, 100}, {0, 1}, {100, 100}} {
		if got := percentile(ds, c.p); got != time.Duration(c.want) {
			t.Errorf("percentile(1..100, %d) = %d, want %d", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestFit(t *testing.T) {
	b := &runner{cfg: Config{Duration: 3 * time.Second}}
	for _, c := range []struct {
		n    int
		rtt  time.Duration
		want int
	}{
		{10000, 0, 10000},
		{10000, 50 * time.Millisecond, 60},
		{10000, 200 * time.Millisecond, 20},
		{5, 200 * time.Millisecond, 5},
	} {
		if got := b.fit(c.n, c.rtt); got != c.want {
			t.Errorf("fit(%d, %v) = %d, want %d", c.n, c.rtt, got, c.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	raw := &Row{Name: rowRaw, MBps1: 1000, MBps8: 2000, EchoP50: 30 * time.Microsecond, EchoP99: 60 * time.Microsecond, DialP50: 100 * time.Microsecond}
	limit := &Row{Name: rowLimit, MBps1: 500, MBps8: 1000, EchoP50: 100 * time.Microsecond, EchoP99: 200 * time.Microsecond,
		DialP50: 200 * time.Microsecond, MemPerSession: 16 << 10, MemSessions: 10000, MemOf: "relay"}
	x := &Row{Name: "rtcp x", Ref: limit, MBps1: 400, MBps8: 500, EchoP50: 130 * time.Microsecond, EchoP99: 300 * time.Microsecond,
		DialP50: 250 * time.Microsecond, MemPerSession: 8 << 10, MemSessions: 10000, MemOf: "DP",
		StalledMem: 27.94e6, StalledSessions: 100}
	broken := &Row{Name: "rtcp y", Ref: limit, Err: io.ErrUnexpectedEOF}
	res := &Result{Raw: raw, Rows: []*Row{raw, limit, x, broken}}
	var b strings.Builder
	if err := res.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("table has %d lines, want header, separator and 4 rows:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if n := strings.Count(l, "|"); n != len(Columns)+1 {
			t.Errorf("line has %d cells, want %d: %s", n-1, len(Columns), l)
		}
	}
	for _, want := range []string{"| 400 (0.80 / 0.40) |", "130 µs (1.30 / 4.33)", "8.0 KiB (0.50), DP, 10000 | 27.9, DP, 100 |",
		"| 500 (1.00 / 0.50) |", "| 100 µs | - | - |", "| rtcp y | failed: unexpected EOF |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestWriteTableRTT: rows at a round trip come in a group under a
// heading row, and their ratios are to the limit and raw TCP of their
// own round trip.
func TestWriteTableRTT(t *testing.T) {
	var rows []*Row
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond} {
		k := 1 + int64(rtt/time.Millisecond) // times grow with the RTT, rates fall
		raw := &Row{Name: rowRaw, RTT: rtt, MBps1: 1000 / float64(k), MBps8: 2000, EchoP50: time.Duration(k) * 40 * time.Microsecond,
			EchoP99: time.Duration(k) * 80 * time.Microsecond, DialP50: time.Duration(k) * 100 * time.Microsecond}
		limit := &Row{Name: rowLimit, RTT: rtt, MBps1: 500 / float64(k), MBps8: 1000, EchoP50: time.Duration(k) * 100 * time.Microsecond,
			EchoP99: time.Duration(k) * 200 * time.Microsecond, DialP50: time.Duration(k) * 200 * time.Microsecond}
		x := &Row{Name: "rtcp x", RTT: rtt, Ref: limit, MBps1: 400 / float64(k), MBps8: 500, EchoP50: time.Duration(k) * 130 * time.Microsecond,
			EchoP99: time.Duration(k) * 300 * time.Microsecond, DialP50: time.Duration(k) * 250 * time.Microsecond}
		if rtt == 0 {
			limit.MemPerSession, limit.MemSessions, limit.MemOf = 16<<10, 10000, "relay"
			x.MemPerSession, x.MemSessions, x.MemOf = 8<<10, 10000, "DP"
		}
		rows = append(rows, raw, limit, x)
	}
	res := &Result{Raw: rows[0], Rows: rows}
	if !res.Delayed() {
		t.Fatal("a result with rows at 50ms is not Delayed")
	}
	var b strings.Builder
	if err := res.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2+2*4 {
		t.Fatalf("table has %d lines, want header, separator and 2 groups of a heading and 3 rows:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if n := strings.Count(l, "|"); n != len(Columns)+1 {
			t.Errorf("line has %d cells, want %d: %s", n-1, len(Columns), l)
		}
	}
	for i, want := range map[int]string{
		2: "| **RTT 0**: loopback",
		3: "| raw TCP | 1000 |",
		6: "| **RTT 50ms** between the server side and the DP |",
		7: "| raw TCP | 20 | 2000 | 2040 µs | 4080 µs | 5100 µs | - |",
		9: "| rtcp x | 8 (0.80 / 0.40) | 500 (0.50 / 0.25) | 6630 µs (1.30 / 3.25) | 15.3 ms (1.50 / 3.75) | 12.8 ms (1.25 / 2.50) | - |",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to begin %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[5], "8.0 KiB (0.50), DP, 10000") {
		t.Errorf("line 5 lacks the memory of RTT 0: %s", lines[5])
	}
}
