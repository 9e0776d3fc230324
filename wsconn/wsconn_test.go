package wsconn_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"rtcp"
	"rtcp/internal/relay"
	"rtcp/wsconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startDP runs a DP whose only door is the WebSocket endpoint of an
// httptest server, and returns the server's address.
func startDP(t *testing.T) (dp *rtcp.DiscoverPoint, addr string) {
	t.Helper()
	dp = new(rtcp.DiscoverPoint)
	mux := http.NewServeMux()
	mux.Handle(wsconn.DefaultPath, wsconn.Handler("", dp.ServeConn))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		dp.Close()
		srv.Close()
	})
	return dp, srv.Listener.Addr().String()
}

// echo serves l, echoing every session, until l is closed.
func echo(l net.Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return done
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo returned %q, want %q", got, msg)
	}
}

// An indirect server and client that reach the DP only over WebSockets.
func TestRTCPOverWebSocket(t *testing.T) {
	for _, tr := range []rtcp.Transport{rtcp.TransportJSON, rtcp.TransportYamux, rtcp.TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			_, addr := startDP(t)
			ws := &wsconn.Dialer{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			lc := rtcp.ListenConfig{Dial: ws.DialContext, Transport: tr}
			l, err := lc.Listen(ctx, addr, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			done := echo(l)
			defer func() { l.Close(); <-done }()

			d := rtcp.Dialer{Dial: ws.DialContext, Name: "laptop", Transport: tr}
			c, err := d.DialContext(ctx, addr, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c, "hello over a WebSocket")
			big := strings.Repeat("0123456789abcdef", 20000)
			roundTrip(t, c, big)
		})
	}
}

func TestHandshakeError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			http.Error(w, "bad   token\n", http.StatusUnauthorized)
			return
		}
		c, err := wsconn.Accept(w, r, "")
		if err != nil {
			return
		}
		c.Close()
	}))
	defer srv.Close()
	ctx := context.Background()

	d := &wsconn.Dialer{URL: srv.URL + "/x?secret=1", Header: http.Header{"Authorization": {"Bearer wrong"}}}
	_, err := d.DialContext(ctx, "tcp", "ignored:1")
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 401 || he.Message != "bad token" {
		t.Fatalf("dial with a wrong token: %v; want a HandshakeError 401 with the body", err)
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("error %q shows the query or gives no hint", err)
	}

	// The server upgrades without the subprotocol the dialer requires.
	d = &wsconn.Dialer{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer right"}}, Subprotocol: "binary"}
	_, err = d.DialURL(ctx, srv.URL)
	if !errors.As(err, &he) || !strings.Contains(he.Message, `not "binary"`) {
		t.Fatalf("dial without the subprotocol answered: %v; want a HandshakeError about it", err)
	}

	for _, tt := range []struct {
		d             wsconn.Dialer
		network, want string
	}{
		{wsconn.Dialer{}, "udp", "over tcp"},
		{wsconn.Dialer{URL: "ftp://x/"}, "tcp", "scheme"},
		{wsconn.Dialer{URL: "ws://[::1"}, "tcp", "bad WebSocket URL"},
	} {
		if _, err := tt.d.DialContext(ctx, tt.network, "x:1"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DialContext(%+v, %s) = %v, want an error containing %q", tt.d, tt.network, err, tt.want)
		}
	}
}

// The net.Conn carries bytes both ways as binary messages and ends with
// io.EOF on a normal close.
func TestConn(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewServer(wsconn.Handler("binary", func(c net.Conn) {
		defer c.Close()
		b, _ := io.ReadAll(io.LimitReader(c, 5))
		got <- b
		c.Write([]byte("world"))
	}))
	defer srv.Close()
	d := &wsconn.Dialer{URL: srv.URL, Subprotocol: "binary"}
	c, err := d.DialURL(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().Network() != "websocket" || c.RemoteAddr().String() != srv.URL {
		t.Errorf("RemoteAddr = %v %v, want websocket %s", c.RemoteAddr().Network(), c.RemoteAddr(), srv.URL)
	}
	c.Write([]byte("hel"))
	c.Write([]byte("lo"))
	if b := <-got; string(b) != "hello" {
		t.Errorf("server read %q", b)
	}
	b, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(b, []byte("world")) {
		t.Errorf("client read %q, %v; want world and a clean end", b, err)
	}
}

// failingConn is a connection whose reads fail.
type failingConn struct{ net.Conn }

func (failingConn) Read([]byte) (int, error) { return 0, errors.New("the other side failed") }

// A relay that cuts a WebSocket (its other side failed) ends it with a
// status that its peer reads as an error: not Close's normal closure,
// which the peer reads as a clean end.
func TestRelayCutIsAnError(t *testing.T) {
	joined := make(chan error, 1)
	srv := httptest.NewServer(wsconn.Handler("binary", func(c net.Conn) {
		b, far := net.Pipe()
		defer far.Close()
		_, err := relay.Join(c, failingConn{b}, nil)
		joined <- err
	}))
	defer srv.Close()
	c, err := (&wsconn.Dialer{URL: srv.URL, Subprotocol: "binary"}).DialURL(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.ReadAll(c); err == nil {
		t.Error("the peer of a WebSocket that a relay cut read a clean end")
	}
	if err := <-joined; !relay.Cut(err) {
		t.Errorf("Join = %v, want a cut", err)
	}
}

// A client whose raw leg (TransportYamux) is a WebSocket cuts its
// session (Abort): the server's read fails. Closing the WebSocket instead
// sends a normal closure, which the DP reads as the session's clean end
// and passes on.
func TestRawLegAbortOverWebSocket(t *testing.T) {
	_, addr := startDP(t)
	ws := &wsconn.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc := rtcp.ListenConfig{Dial: ws.DialContext, Transport: rtcp.TransportYamux}
	l, err := lc.Listen(ctx, addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	read := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			read <- err
			return
		}
		defer c.Close()
		c.Write([]byte("ready"))
		_, err = io.ReadAll(c)
		read <- err
	}()
	d := rtcp.Dialer{Dial: ws.DialContext, Name: "laptop", Transport: rtcp.TransportYamux}
	c, err := d.DialContext(ctx, addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, len("ready"))); err != nil {
		t.Fatal(err)
	}
	c.(*rtcp.Conn).Abort(errors.New("the client gave up"))
	if err := <-read; err == nil {
		t.Error("the server's read of a session its client cut over a WebSocket ended cleanly")
	}
}
