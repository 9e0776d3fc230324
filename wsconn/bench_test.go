package wsconn_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"rtcp/wsconn"
)

// BenchmarkAcceptedWrite measures what bounding messages costs: an
// accepted connection writes chunks of the relay's size (256 KiB) or
// smaller, as one message each (MaxMessage 0, as before) or split into
// messages under 32 KiB (what the Cumulocity C agent can read), to a
// client over loopback TCP.
func BenchmarkAcceptedWrite(b *testing.B) {
	for _, chunk := range []int{16 << 10, 256 << 10} {
		for _, max := range []int{0, 1<<15 - 1} {
			b.Run(fmt.Sprintf("chunk=%dK/MaxMessage=%d", chunk>>10, max), func(b *testing.B) {
				benchWrite(b, chunk, max)
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

func benchWrite(b *testing.B, chunk, max int) {
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&wsconn.Acceptor{MaxMessage: max}).Accept(w, r)
		if err != nil {
			b.Error(err)
			return
		}
		conns <- c
	}))
	defer srv.Close()
	client, err := (&wsconn.Dialer{URL: srv.URL}).DialURL(context.Background(), srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	server := <-conns
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		read <- n
	}()
	p := make([]byte, chunk)
	b.SetBytes(int64(chunk))
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := server.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	server.Close()
	if n := <-read; n != int64(b.N*chunk) {
		b.Fatalf("read %d bytes, want %d", n, b.N*chunk)
	}
	b.StopTimer()
	// The machine may be shared: CPU time per byte says more than the
	// wall clock does.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/float64(chunk)*(1<<10), "cpu-ns/KiB")
	client.Close()
}
