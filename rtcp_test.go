package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger logs to stderr when RTCP_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RTCP_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startDP runs a DiscoverPoint on a loopback port until the test ends.
func startDP(t testing.TB, dp *DiscoverPoint) string {
	t.Helper()
	if dp == nil {
		dp = new(DiscoverPoint)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	t.Cleanup(func() {
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("Serve returned %v, want ErrDiscoverPointClosed", err)
		}
	})
	return l.Addr().String()
}

func listen(t testing.TB, lc *ListenConfig, dp, name string) net.Listener {
	t.Helper()
	if lc == nil {
		lc = new(ListenConfig)
	}
	l, err := lc.Listen(context.Background(), dp, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// echo serves l, echoing each session until its peer half-closes.
func echo(t testing.TB, l net.Listener) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
}

// modes are the combinations of server and client transports.
var modes = []struct {
	name   string
	server Transport
	client Transport
}{
	{"json/json", TransportJSON, TransportJSON},
	{"yamux/raw", TransportYamux, TransportYamux},
	{"yamux/json", TransportYamux, TransportJSON},
	{"json/raw", TransportJSON, TransportYamux},
	{"tcp/raw", TransportTCP, TransportYamux},
	{"tcp/json", TransportTCP, TransportJSON},
}

func TestEndToEnd(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dp := startDP(t, nil)
			l := listen(t, &ListenConfig{Transport: m.server}, dp, "printer-7")
			echo(t, l)

			d := Dialer{Transport: m.client}
			c, err := d.DialContext(context.Background(), dp, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := bytes.Repeat([]byte("hello rtcp "), 100000)
			go func() {
				c.Write(msg)
				c.(*Conn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
			}
			if got, want := c.RemoteAddr().String(), "printer-7@"+dp; got != want {
				t.Errorf("RemoteAddr = %q, want %q", got, want)
			}
			if c.RemoteAddr().Network() != "rtcp" {
				t.Errorf("Network = %q", c.RemoteAddr().Network())
			}
		})
	}
}

func TestDialNoServer(t *testing.T) {
	dp := startDP(t, nil)
	_, err := Dial(dp, "nobody")
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Dial error = %v, want a RefusedError", err)
	}
	for _, want := range []string{`"nobody"`, dp, "no server"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestNameTaken(t *testing.T) {
	dp := startDP(t, nil)
	l := listen(t, nil, dp, "x")
	echo(t, l)
	_, err := Listen(dp, "x")
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second Listen error = %v, want ErrNameTaken", err)
	}
	// The first owner keeps working.
	c, err := Dial(dp, "x")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo after refused takeover: %q, %v", buf, err)
	}
	c.Close()
}

func TestConnNettest(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dp := startDP(t, &DiscoverPoint{Logger: testLogger()})
			l := listen(t, &ListenConfig{Transport: m.server}, dp, "nettest")
			d := Dialer{Transport: m.client}
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				client, server, err := dialAccepted(&d, l, dp, "nettest")
				if err != nil {
					return nil, nil, nil, err
				}
				// nettest drives c1 hardest: make it the server's Conn, so each
				// transport's server side is held to net.Conn too.
				return server, client, func() { client.Close(); server.Close() }, nil
			})
		})
	}
}

func TestDirect(t *testing.T) {
	l, err := Listen("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(*net.TCPListener); !ok {
		t.Fatalf("Listen with no name returned %T, want *net.TCPListener", l)
	}
	echo(t, l)
	c, err := Dial(l.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("Dial with no name returned %T, want *net.TCPConn", c)
	}
	c.Close()
}

var _ = time.Second
