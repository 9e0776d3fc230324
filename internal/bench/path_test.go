package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp"
	"rtcp/internal/relay"
)

// The benchmarks below build the command path's topology in one process:
// sink, an indirect server that relays each session to the sink (what
// "rtcp expose" does), a DP in port mode, and plain TCP clients; or the
// limit (two reference relays). One process lets pprof see every hop:
//
//	go test -run='^$' -bench=Path -cpuprofile=cpu.out ./internal/bench
//	go tool pprof -top cpu.out
//
// BenchmarkPathIdle reports the heap and stack bytes per idle session of
// the whole path (client, DP, server, sink); -memprofile shows whose.

// pathOf starts the path name ("raw", "limit", or an rtcp transport) and
// returns its dialer.
func pathOf(b *testing.B, name string) dialer {
	sink := serveB(b, Serve)
	switch name {
	case "raw":
		return tcpDialer(sink)
	case "limit":
		r2 := serveB(b, func(l net.Listener) error { return Relay(l, sink) })
		r1 := serveB(b, func(l net.Listener) error { return Relay(l, r2) })
		return tcpDialer(r1)
	}
	t, err := rtcp.ParseTransport(name)
	if err != nil {
		b.Fatal(err)
	}
	dp := new(rtcp.DiscoverPoint)
	dpAddr := serveB(b, dp.Serve)
	port := serveB(b, func(l net.Listener) error { return dp.ServePort(l, "bench") })
	b.Cleanup(func() { dp.Close() })
	lc := rtcp.ListenConfig{Transport: t, PoolSize: 4}
	l, err := lc.Listen(context.Background(), dpAddr, "bench")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				d, err := net.Dial("tcp", sink)
				if err != nil {
					c.Close()
					return
				}
				relay.Join(c, d, nil)
			})
		}
	})
	b.Cleanup(func() { l.Close(); wg.Wait() })
	return tcpDialer(port)
}

func serveB(b *testing.B, serve func(net.Listener) error) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(l)
	}()
	b.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

var paths = []string{"raw", "limit", "json", "yamux", "tcp"}

func BenchmarkPathThroughput(b *testing.B) {
	for _, p := range paths {
		for _, conns := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/conns=%d", p, conns), func(b *testing.B) {
				dial := pathOf(b, p)
				ctx := context.Background()
				cs := make([]net.Conn, conns)
				for i := range cs {
					c, err := open(ctx, dial)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					c.Write([]byte{modeThroughput})
					cs[i] = c
				}
				b.SetBytes(int64(len(payload)))
				b.ResetTimer()
				cpu0 := cpuTime()
				var wg sync.WaitGroup
				for i, c := range cs {
					n := b.N / conns
					if i < b.N%conns {
						n++
					}
					wg.Go(func() {
						for range n {
							if _, err := c.Write(payload); err != nil {
								b.Error(err)
								return
							}
						}
						c.(halfCloser).CloseWrite()
						var a [1]byte
						if _, err := io.ReadFull(c, a[:]); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				// CPU per byte tells a change's effect on a loaded machine
				// better than the rate does.
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*len(payload))*1e6/1e3, "cpu-µs/MB")
			})
		}
	}
}

func BenchmarkPathEcho(b *testing.B) {
	for _, p := range paths {
		b.Run(p, func(b *testing.B) {
			dial := pathOf(b, p)
			b.ResetTimer()
			rtts, err := echo(context.Background(), dial, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(percentile(rtts, 50).Microseconds()), "p50-µs")
		})
	}
}

func BenchmarkPathDial(b *testing.B) {
	for _, p := range paths {
		b.Run(p, func(b *testing.B) {
			dial := pathOf(b, p)
			b.ResetTimer()
			ds, err := dialFirstByte(context.Background(), dial, b.N)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(percentile(ds, 50).Microseconds()), "p50-µs")
		})
	}
}

// BenchmarkPathIdle holds 1000 idle sessions per iteration and reports the
// heap and stack they hold, per session, over the whole path. (1000: the
// limit's path holds 14 descriptors per session in one process.)
func BenchmarkPathIdle(b *testing.B) {
	const n = 1000
	for _, p := range paths {
		b.Run(p, func(b *testing.B) {
			dial := pathOf(b, p)
			var per float64
			for range b.N {
				before := inUse()
				var s held
				if err := s.add(context.Background(), dial, n); err != nil {
					b.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // the last sessions' far ends settle
				per += float64(inUse()-before) / n
				if *idleProfile != "" {
					writeHeap(b, *idleProfile+"."+p)
				}
				s.close()
			}
			b.ReportMetric(per/float64(b.N), "B/session")
		})
	}
}

var idleProfile = flag.String("idleprofile", "", "write a heap profile of each path while its idle sessions are held to `file`.PATH")

func writeHeap(b *testing.B, name string) {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// inUse returns the heap and stack bytes in use after a collection.
func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
