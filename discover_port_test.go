package rtcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
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
