package bench

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
// directly and behind two reference relays (which must pass the
// half-close on, or throughput never gets its answer).
func TestLoad(t *testing.T) {
	sink := serve(t, Serve)
	r2 := serve(t, func(l net.Listener) error { return Relay(l, sink) })
	r1 := serve(t, func(l net.Listener) error { return Relay(l, r2) })
	for name, addr := range map[string]string{"direct": sink, "two relays": r1} {
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
			var s idle
			defer s.close()
			if err := s.add(ctx, dial, 50); err != nil || len(s.conns) != 50 {
				t.Fatalf("idle: %d sessions, %v", len(s.conns), err)
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

func TestWriteTable(t *testing.T) {
	raw := &Row{Name: rowRaw, MBps1: 1000, MBps8: 2000, EchoP50: 30 * time.Microsecond, EchoP99: 60 * time.Microsecond, DialP50: 100 * time.Microsecond}
	limit := &Row{Name: rowLimit, MBps1: 500, MBps8: 1000, EchoP50: 100 * time.Microsecond, EchoP99: 200 * time.Microsecond,
		DialP50: 200 * time.Microsecond, MemPerSession: 16 << 10, MemSessions: 10000, MemOf: "relay"}
	x := &Row{Name: "rtcp x", Ref: limit, MBps1: 400, MBps8: 500, EchoP50: 130 * time.Microsecond, EchoP99: 300 * time.Microsecond,
		DialP50: 250 * time.Microsecond, MemPerSession: 8 << 10, MemSessions: 10000, MemOf: "DP"}
	res := &Result{Raw: raw, Rows: []*Row{raw, limit, x}}
	var b strings.Builder
	if err := res.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines, want header, separator and 3 rows:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if n := strings.Count(l, "|"); n != len(Columns)+1 {
			t.Errorf("line has %d cells, want %d: %s", n-1, len(Columns), l)
		}
	}
	for _, want := range []string{"| 400 (0.80 / 0.40) |", "130 µs (1.30 / 4.33)", "8.0 KiB (0.50), DP, 10000", "| 500 (1.00 / 0.50) |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
