package rtcp

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
)

// BenchmarkHTTPDoor measures small GETs through the HTTP door, beside the
// same GETs through a plain httputil.ReverseProxy to a server on a local
// port: the limit for the door on this machine.
func BenchmarkHTTPDoor(b *testing.B) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })
	run := func(b *testing.B, door http.Handler, host string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: door}
		go srv.Serve(l)
		defer srv.Close()
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/", nil)
				req.Host = host
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("reverseproxy", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		backend := &http.Server{Handler: hello}
		go backend.Serve(l)
		defer backend.Close()
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: l.Addr().String()})
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 32}
		run(b, rp, "hello.dp.test")
	})
	for _, tr := range []Transport{TransportYamux, TransportTCP} {
		b.Run("door-"+tr.String(), func(b *testing.B) {
			dp := new(DiscoverPoint)
			addr := startDP(b, dp)
			backend := &http.Server{Handler: hello}
			go backend.Serve(listen(b, &ListenConfig{Transport: tr}, addr, "hello"))
			defer backend.Close()
			door := dp.HTTPHandler("dp.test")
			defer door.CloseIdleConnections()
			run(b, door, "hello.dp.test")
		})
	}
}
