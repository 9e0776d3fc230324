package rtcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmarks below come in pairs: one session through an in-process DP
// on 127.0.0.1, and the same traffic on one raw loopback TCP connection,
// so that the cost of the relay can be read as a ratio:
//
//	go test -run='^$' -bench='Throughput|RoundTrip' -benchtime=2s .

const throughputChunk = 32 << 10

// sink reads a connection to its end, then answers one byte: the writer
// knows that everything it wrote has arrived.
func sink(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
	c.Write([]byte{1})
}

// streamTo writes b.N chunks to c, half-closes it, and waits for the sink's
// answer.
func streamTo(b *testing.B, c net.Conn, closeWrite func() error) {
	buf := make([]byte, throughputChunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(throughputChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := closeWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatalf("waiting for the sink: %v", err)
	}
	b.StopTimer()
}

// serveWith accepts sessions on l and runs handle on each until l closes.
func serveWith(b *testing.B, l net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { handle(c) })
		}
	})
	b.Cleanup(func() { l.Close(); wg.Wait() })
}

// dpSession returns a client session to a server run by handle, through
// an in-process DP.
func dpSession(b *testing.B, handle func(net.Conn)) *Conn {
	dp := runDP(b, new(DiscoverPoint))
	lc := ListenConfig{}
	l, err := lc.Listen(context.Background(), dp, "bench")
	if err != nil {
		b.Fatal(err)
	}
	serveWith(b, l, handle)
	c, err := Dial(dp, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// tcpSession returns a loopback TCP connection to a server run by handle.
func tcpSession(b *testing.B, handle func(net.Conn)) *net.TCPConn {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveWith(b, l, handle)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// BenchmarkThroughput streams one session through the DP (JSON transport
// on both legs).
func BenchmarkThroughput(b *testing.B) {
	c := dpSession(b, sink)
	streamTo(b, c, c.CloseWrite)
}

// BenchmarkThroughputTCP is the baseline: the same stream on raw TCP.
func BenchmarkThroughputTCP(b *testing.B) {
	c := tcpSession(b, sink)
	streamTo(b, c, c.CloseWrite)
}

func echoConn(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// pingPong sends 64 bytes and reads them back, b.N times.
func pingPong(b *testing.B, c net.Conn) {
	msg := make([]byte, 64)
	got := make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		msg[0] = byte(i)
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		if got[0] != msg[0] {
			b.Fatalf("echo %d, want %d", got[0], msg[0])
		}
	}
	b.StopTimer()
}

// BenchmarkRoundTrip is a 64-byte echo through the DP: client to DP to
// server and back, per iteration.
func BenchmarkRoundTrip(b *testing.B) {
	pingPong(b, dpSession(b, echoConn))
}

// BenchmarkRoundTripTCP is the baseline: a 64-byte echo on raw TCP.
func BenchmarkRoundTripTCP(b *testing.B) {
	pingPong(b, tcpSession(b, echoConn))
}

// BenchmarkThroughputLimited streams one session through the DP to a
// name under Limits of sessions only (MaxSessions, SessionsPerSecond),
// beside the same name without Limits, per server transport (raw client
// leg): a limit on sessions costs nothing per byte.
//
//	go test -run='^$' -bench=ThroughputLimited -benchtime=2s .
func BenchmarkThroughputLimited(b *testing.B) {
	for _, tr := range []Transport{TransportTCP, TransportYamux, TransportJSON} {
		for _, lim := range []struct {
			name string
			l    Limits
		}{
			{"none", Limits{}},
			{"sessions", Limits{MaxSessions: 100, SessionsPerSecond: 1000}},
		} {
			b.Run(fmt.Sprintf("%v/%s", tr, lim.name), func(b *testing.B) {
				dp := runDP(b, &DiscoverPoint{Policy: &Policy{
					AnonymousServers: true, AnonymousClients: true,
					Names: []NameRule{{Name: "bench", Limits: lim.l}},
				}})
				l, err := (&ListenConfig{Transport: tr}).Listen(context.Background(), dp, "bench")
				if err != nil {
					b.Fatal(err)
				}
				serveWith(b, l, sink)
				c, err := (&Dialer{Transport: TransportYamux}).DialContext(context.Background(), dp, "bench")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				cpu0 := cpuTime()
				streamTo(b, c, c.(*Conn).CloseWrite)
				// The whole process (client, DP, server) per KiB: a
				// figure that a busy machine changes less than MB/s.
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/throughputChunk*(1<<10), "cpu-ns/KiB")
			})
		}
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
