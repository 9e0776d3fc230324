package rtcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// portLog is a slog.Handler that reports each port the DP starts serving:
// [server name, address].
type portLog struct{ ports chan [2]string }

func (h portLog) Enabled(context.Context, slog.Level) bool { return true }
func (h portLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h portLog) WithGroup(string) slog.Handler            { return h }
func (h portLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "rtcp: port mode:") {
		return nil
	}
	var p [2]string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "server":
			p[0] = a.Value.String()
		case "addr":
			p[1] = a.Value.String()
		}
		return true
	})
	h.ports <- p
	return nil
}

// freeAddr returns a loopback address that nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestListenAndServePorts(t *testing.T) {
	ch := make(chan [2]string, 3)
	main := freeAddr(t)
	dp := &DiscoverPoint{
		Logger: slog.New(portLog{ch}),
		Ports:  map[string]string{"127.0.0.1:0": "db-json", "127.0.0.2:0": "db-yamux", "127.0.0.3:0": "nobody"},
	}
	served := make(chan error, 1)
	go func() { served <- dp.ListenAndServe(main) }()
	ports := make(map[string]string) // the main address is bound before the ports
	for range dp.Ports {
		p := <-ch
		ports[p[0]] = p[1]
	}

	// Nobody serves "nobody": the connection is closed at once (the reset
	// may even reach the dial).
	if c, err := net.Dial("tcp", ports["nobody"]); err == nil {
		c.SetDeadline(time.Now().Add(time.Minute))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("port with no server: read %d bytes, want the connection closed", n)
		}
		c.Close()
	}

	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		t.Run(tr.String(), func(t *testing.T) {
			name := "db-" + tr.String()
			echo(t, listen(t, &ListenConfig{Transport: tr}, main, name))
			c, err := net.Dial("tcp", ports[name])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			msg := strings.Repeat("port mode ", 10000)
			go func() {
				io.WriteString(c, msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c) // EOF: the half-close crossed both ways
			if err != nil || string(got) != msg {
				t.Fatalf("echo through the port: %d bytes, %v; want %d bytes", len(got), err, len(msg))
			}
		})
	}

	dp.Close()
	if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
		t.Errorf("ListenAndServe returned %v, want ErrDiscoverPointClosed", err)
	}
	for name, addr := range ports {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("port %s of %q still accepts after Close", addr, name)
		}
	}
}

func TestListenAndServeBadPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	main := freeAddr(t)
	dp := &DiscoverPoint{Ports: map[string]string{taken.Addr().String(): "db"}}
	err = dp.ListenAndServe(main)
	if err == nil || !strings.Contains(err.Error(), `"db"`) {
		t.Fatalf("ListenAndServe with a taken port returned %v, want an error naming the server", err)
	}
	// The main address was released again.
	l, err := net.Listen("tcp", main)
	if err != nil {
		t.Fatalf("main address still held after the failure: %v", err)
	}
	l.Close()
	dp.Close()
}

// TestIdlePortSessionStacks bounds the goroutine stacks an idle session
// through a port door holds in the DP. The server's side keeps each
// session without a goroutine, and the clients are plain TCP
// connections, so the growth of the process's stacks is the DP's: an
// idle session's one relay goroutine (the server's bytes go to the client
// from the link's read loop, mux.Stream.PushAsync). A few hundred bytes
// more of frames under its read once kept it at twice the size
// (docs/performance.md).
func TestIdlePortSessionStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the frames and the stacks")
	}
	for _, tr := range []Transport{TransportYamux, TransportJSON} {
		t.Run(tr.String(), func(t *testing.T) {
			const n = 500
			perSession, _ := idlePortSessions(t, tr, n)
			t.Logf("%d B of stack per idle session", perSession)
			// 1.3-4.1 KiB in 20 runs (one goroutine of at most 4 KiB);
			// 6-8.3 KiB with the second goroutine that waited for the
			// server's bytes, before PushAsync; 10.8-12.4 KiB with the
			// frames that had grown before 8c4d24b.
			if perSession > 5632 {
				t.Errorf("an idle port-door session holds %d B of goroutine stacks, want <= 5.5 KiB: did a frame under the relay's read grow, or a goroutine come back? (docs/performance.md)", perSession)
			}
		})
	}
}

// TestIdlePortSessionGoroutines: an idle session through a port door
// holds one goroutine in the DP, the one that waits for the client's
// bytes; none waits for the server's (mux.Stream.PushAsync), for a
// server on a yamux link as on a JSON one.
func TestIdlePortSessionGoroutines(t *testing.T) {
	for _, tr := range []Transport{TransportYamux, TransportJSON} {
		t.Run(tr.String(), func(t *testing.T) {
			const n = 200
			_, perSession := idlePortSessions(t, tr, n)
			t.Logf("%.2f goroutines per idle session", perSession)
			if perSession > 1.1 {
				t.Errorf("an idle port-door session holds %.2f goroutines, want 1: is a relay goroutine waiting for the server's bytes again?", perSession)
			}
		})
	}
}

// idlePortSessions holds n idle sessions through a port door of a DP
// with a server of transport tr, each past a byte each way, and returns
// the growth of the process's stacks and of its goroutines per session.
func idlePortSessions(t *testing.T, tr Transport, n int) (stack int64, goroutines float64) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.ServePort(pl, "idle") }()
	t.Cleanup(func() { pl.Close(); <-served })
	l := listen(t, &ListenConfig{Transport: tr}, addr, "idle")
	// The server answers each session's byte and keeps it, from one
	// goroutine.
	kept := make(chan []net.Conn, 1)
	go func() {
		var cs []net.Conn
		defer func() { kept <- cs }()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cs = append(cs, c)
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	open := func() net.Conn {
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		return c
	}
	stacks := func() int64 {
		// A GC halves a stack that uses under a quarter of it: enough
		// of them for a stack that grew during setup to shrink back.
		for range 5 {
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.StackInuse)
	}
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
		l.Close()
		for _, c := range <-kept {
			c.Close()
		}
	}()
	cs = append(cs, open()) // the link and the DP's own goroutines
	before, g := stacks(), runtime.NumGoroutine()
	for range n {
		cs = append(cs, open())
	}
	// Each session answered its byte, so the DP relays it both ways: the
	// goroutines it needs are running, and none is still starting.
	g = runtime.NumGoroutine() - g
	return (stacks() - before) / int64(n), float64(g) / float64(n)
}
