package rtcp

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// BenchmarkClusterHop measures what the DP-to-DP hop costs: the same
// traffic to a server whose links are on DP1, from a client of DP1
// ("1dp") and from a client of DP2, which carries each session to DP1
// ("2dp"): a stream (throughput), one byte back and forth (round trip),
// and a short session opened, used once and closed (open). Read the
// ratios of each pair:
//
//	go test -run='^$' -bench=ClusterHop -benchtime=2s .
func BenchmarkClusterHop(b *testing.B) {
	for _, m := range []struct {
		name           string
		server, client Transport
	}{
		{"tcp-raw", TransportTCP, TransportYamux},
		{"yamux-raw", TransportYamux, TransportYamux},
		{"json-json", TransportJSON, TransportJSON},
	} {
		for _, hops := range []string{"1dp", "2dp"} {
			b.Run("throughput/"+m.name+"/"+hops, func(b *testing.B) {
				c, _ := hopSession(b, m.server, m.client, hops == "2dp", hopSink)
				hopStream(b, c)
			})
			b.Run("roundtrip/"+m.name+"/"+hops, func(b *testing.B) {
				c, _ := hopSession(b, m.server, m.client, hops == "2dp", hopEcho)
				hopPingPong(b, c)
			})
			b.Run("open/"+m.name+"/"+hops, func(b *testing.B) {
				_, dial := hopSession(b, m.server, m.client, hops == "2dp", hopEcho)
				hopOpen(b, dial)
			})
		}
	}
}

const hopChunk = 32 << 10

// hopSession returns a client session to a server run by handle whose
// links are on DP1 of a two-DP cluster, dialled through DP1 or DP2, and a
// function that dials another such session.
func hopSession(b *testing.B, server, client Transport, viaDP2 bool, handle func(net.Conn)) (*Conn, func() (net.Conn, error)) {
	addrs, _, _ := startCluster(b, 2)
	l, err := (&ListenConfig{Transport: server}).Listen(context.Background(), addrs[0], "bench")
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
			wg.Go(func() { handle(c) })
		}
	})
	b.Cleanup(func() { l.Close(); wg.Wait() })
	dp := addrs[0]
	if viaDP2 {
		dp = addrs[1]
	}
	dial := func() (net.Conn, error) {
		return (&Dialer{Transport: client}).DialContext(context.Background(), dp, "bench")
	}
	c, err := dial()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c.(*Conn), dial
}

// hopOpen opens a session, exchanges one byte and closes it, b.N times:
// what a short-lived session costs.
func hopOpen(b *testing.B, dial func() (net.Conn, error)) {
	buf := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
}

// hopSink reads to the end, then answers one byte.
func hopSink(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
	c.Write([]byte{1})
}

// hopEcho echoes until the end.
func hopEcho(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// hopStream writes b.N chunks, half-closes, and waits for the sink.
func hopStream(b *testing.B, c *Conn) {
	buf := make([]byte, hopChunk)
	b.SetBytes(hopChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatalf("waiting for the sink: %v", err)
	}
	b.StopTimer()
}

// hopPingPong sends one byte and waits for its echo, b.N times.
func hopPingPong(b *testing.B, c *Conn) {
	buf := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}
