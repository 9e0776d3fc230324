package mux

import (
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// BenchmarkNoFlowControlBulk: a stream toward a peer without flow control
// writes 1 MiB at a time over loopback TCP, alone on the link or beside
// a stream that writes a 16-byte message after each of its MiB. It
// reports the CPU time the process spent per GB carried (cpu-s/GB): the
// rate moves with the machine's load far more.
func BenchmarkNoFlowControlBulk(b *testing.B) {
	for _, chatty := range []bool{false, true} {
		name := "alone"
		if chatty {
			name = "beside small"
		}
		b.Run(name, func(b *testing.B) {
			ca, cb := flowtest.TCPPair(b)
			cfg := Config{HalfClose: true}
			l := &link{a: New(ca, newBinFramer(ca), cfg), b: New(cb, newBinFramer(cb), cfg), ca: ca, cb: cb}
			defer l.close()
			bulkA, bulkB := l.open(b)
			smallA, smallB := l.open(b)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(io.Discard, bulkB) }()
			go func() { defer wg.Done(); io.Copy(io.Discard, smallB) }()
			buf := make([]byte, 1<<20)
			msg := []byte("GET key:000042\r\n")
			b.SetBytes(int64(len(buf)))
			start := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := bulkA.Write(buf); err != nil {
					b.Fatal(err)
				}
				if chatty {
					if _, err := smallA.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
			}
			bulkA.CloseWrite()
			smallA.CloseWrite()
			wg.Wait()
			b.StopTimer()
			b.ReportMetric((cpuTime()-start).Seconds()/(float64(b.N)*float64(len(buf))/1e9), "cpu-s/GB")
			bulkA.Close()
			smallA.Close()
		})
	}
}

// cpuTime is the user and system time the process has spent.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
