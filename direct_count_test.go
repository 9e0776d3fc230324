package rtcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The work on the path from Dial to first byte of a brokered session,
// counted rather than timed (docs/direct.md, "Measured"): over loopback,
// without namespaces, a dial and one byte echoed, for a relayed session
// (Direct off), a brokered one whose punch ends at once without a
// system call (DirectTimeout 1 ns on both sides: what the brokering and
// the framing cost alone), and a brokered one whose punch runs.

// countKinds are the kinds of dial counted.
var countKinds = []struct {
	name    string
	direct  bool
	timeout time.Duration // both sides' DirectTimeout
}{
	{"relayed", false, 0},
	{"on-nopunch", true, time.Nanosecond},
	{"on", true, 0},
}

// dialEchoOne dials name at addr with d, and sends one byte and reads it
// back; then calls back, if not nil, before it closes the session.
func dialEchoOne(d *Dialer, addr string, back func()) error {
	c, err := d.DialContext(context.Background(), addr, "printer-7")
	if err != nil {
		return err
	}
	defer c.Close()
	one := []byte{1}
	if _, err := c.Write(one); err != nil {
		return err
	}
	_, err = io.ReadFull(c, one)
	if back != nil {
		back()
	}
	return err
}

// goroutinesCreated is the count of goroutines this process started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// BenchmarkDirectDialCount dials and echoes one byte, all sides in this
// process: allocs/op, goroutines/op and cpu-ns/op (the process's user
// and system CPU time, which the machine's load changes far less than
// the time a dial takes) are the client's, the DP's and the server's
// together.
func BenchmarkDirectDialCount(b *testing.B) {
	for _, k := range countKinds {
		b.Run(k.name, func(b *testing.B) {
			addr := startDP(b, nil)
			l := listen(b, &ListenConfig{Transport: TransportYamux, Direct: k.direct, DirectTimeout: k.timeout}, addr, "printer-7")
			echo(b, l)
			d := &Dialer{Transport: TransportYamux, Direct: k.direct, DirectTimeout: k.timeout}
			if err := dialEchoOne(d, addr, nil); err != nil { // the early Connect from here on
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			g, cpu := goroutinesCreated(), cpuTime()
			took := make([]time.Duration, 0, b.N)
			for range b.N {
				began := time.Now()
				if err := dialEchoOne(d, addr, func() { took = append(took, time.Since(began)) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(goroutinesCreated()-g)/float64(b.N), "goroutines/op")
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
		})
	}
}

// TestDirectCountRole runs one side of the count in a process of its own,
// so that strace -f -c (or perf stat) counts its system calls alone; it
// is skipped unless RTCP_COUNT_ROLE is set:
//
//	RTCP_COUNT_ROLE=dp     serve a DP on RTCP_COUNT_ADDR until stdin ends
//	RTCP_COUNT_ROLE=server listen at it as printer-7 and echo, until stdin ends
//	                       (it prints a line once it is registered)
//	RTCP_COUNT_ROLE=client dial RTCP_COUNT_N times (after one dial of warm-up)
//
// with RTCP_COUNT_KIND one of relayed, on-nopunch and on. Each prints the
// goroutines it started, the objects and bytes it allocated and the CPU
// time it used. Two runs with different N, subtracted, give the counts per
// dial (scripts/count-direct runs them).
func TestDirectCountRole(t *testing.T) {
	role := os.Getenv("RTCP_COUNT_ROLE")
	if role == "" {
		t.Skip("RTCP_COUNT_ROLE is not set: run by hand, under strace (see the comment)")
	}
	addr := os.Getenv("RTCP_COUNT_ADDR")
	var direct bool
	var timeout time.Duration
	found := false
	for _, k := range countKinds {
		if k.name == os.Getenv("RTCP_COUNT_KIND") {
			direct, timeout, found = k.direct, k.timeout, true
		}
	}
	if !found {
		t.Fatalf("RTCP_COUNT_KIND %q: want relayed, on-nopunch or on", os.Getenv("RTCP_COUNT_KIND"))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs, bytes, g, cpu := ms.Mallocs, ms.TotalAlloc, goroutinesCreated(), cpuTime()
	defer func() {
		runtime.ReadMemStats(&ms)
		fmt.Printf("count %s: %d goroutines, %d mallocs, %d bytes, %d cpu-ns\n", role, goroutinesCreated()-g, ms.Mallocs-mallocs, ms.TotalAlloc-bytes, cpuTime()-cpu)
	}()
	switch role {
	case "dp":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		dp := new(DiscoverPoint)
		served := make(chan error, 1)
		go func() { served <- dp.Serve(ln) }()
		io.Copy(io.Discard, os.Stdin)
		dp.Close()
		<-served
	case "server":
		l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: direct, DirectTimeout: timeout}, addr, "printer-7")
		echo(t, l)
		fmt.Println("count server: registered")
		io.Copy(io.Discard, os.Stdin)
	case "client":
		n, _ := strconv.Atoi(os.Getenv("RTCP_COUNT_N"))
		d := &Dialer{Transport: TransportYamux, Direct: direct, DirectTimeout: timeout}
		for i := range n + 1 {
			if err := dialEchoOne(d, addr, nil); err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
		}
	default:
		t.Fatalf("RTCP_COUNT_ROLE %q: want dp, server or client", role)
	}
}
