package rtcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// balancerDial returns a Dial that connects from 127.0.0.2, the test's
// load balancer, and sends header first.
func balancerDial(header []byte) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil || header == nil {
			return c, err
		}
		if _, err := c.Write(header); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

func proxyHeader(t *testing.T, version int, client string) []byte {
	t.Helper()
	b, err := AppendProxyHeader(nil, version, tcpAddr(client), tcpAddr("127.0.0.1:9000"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proxyFromDP is a DP behind a balancer at 127.0.0.2 whose Policy lets
// only 192.0.2.0/24 and 2001:db8::/32 reach "web".
func proxyFromDP() *DiscoverPoint {
	return &DiscoverPoint{
		Logger:            testLogger(),
		ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Policy: &Policy{AnonymousServers: true, AnonymousClients: true, Names: []NameRule{{
			Name:  "web",
			Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		}}},
	}
}

// TestProxyProtocolFrom checks the DP's -listen door behind a balancer:
// the client a v1 or v2 header names, IPv4 or IPv6, is the one the
// Policy's allow list checks and the server is told; a connection from
// the balancer without a header, and a header from anywhere else, are
// refused.
func TestProxyProtocolFrom(t *testing.T) {
	dp := proxyFromDP()
	addr := startDP(t, dp)
	l := listen(t, nil, addr, "web")

	for _, tt := range []struct {
		version int
		client  string
	}{{1, "192.0.2.7:1234"}, {2, "192.0.2.8:1"}, {1, "[2001:db8::7]:443"}, {2, "[2001:db8::8]:80"}} {
		d := Dialer{Dial: balancerDial(proxyHeader(t, tt.version, tt.client))}
		c, err := d.DialContext(context.Background(), addr, "web")
		if err != nil {
			t.Fatalf("v%d from %s: %v", tt.version, tt.client, err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RemoteAddr().(*Addr).Addr; got != tt.client {
			t.Errorf("v%d: the server was told the client is at %s, want %s", tt.version, got, tt.client)
		}
		s.Close()
		c.Close()
	}

	refused := []struct {
		what string
		d    *Dialer
		want error
	}{
		{"a client the allow list refuses", &Dialer{Dial: balancerDial(proxyHeader(t, 2, "198.51.100.1:5"))}, ErrUnauthorized},
		{"a v1 client the allow list refuses", &Dialer{Dial: balancerDial(proxyHeader(t, 1, "[2001:db9::1]:5"))}, ErrUnauthorized},
		{"no header from the balancer", &Dialer{Dial: balancerDial(nil)}, nil},
		{"a header from elsewhere", &Dialer{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, network, addr)
			if err == nil {
				c.Write(proxyHeader(t, 1, "192.0.2.7:1234"))
			}
			return c, err
		}}, nil},
	}
	for _, r := range refused {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := r.d.DialContext(ctx, addr, "web")
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded", r.what)
			continue
		}
		if r.want != nil && !errors.Is(err, r.want) {
			t.Errorf("%s: %v, want %v", r.what, err, r.want)
		}
	}
}

// TestProxyProtocolFromDoors checks port mode and the HTTP door behind a
// balancer: the server sees the client the header names.
func TestProxyProtocolFromDoors(t *testing.T) {
	dp := proxyFromDP()
	addr := startDP(t, dp)
	l := listen(t, nil, addr, "web")

	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.ServePort(pl, "web") }()
	t.Cleanup(func() { dp.Close(); <-served })

	c, err := balancerDial(proxyHeader(t, 2, "192.0.2.9:999"))(context.Background(), "tcp", pl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hi"); err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RemoteAddr().(*Addr).Addr; got != "192.0.2.9:999" {
		t.Errorf("port mode: the server was told the client is at %s", got)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "hi" {
		t.Errorf("port mode: the server read %q, %v after the header", got, err)
	}
	s.Close()

	// The HTTP door.
	serveBackend(t, l, whoAmI("web"))
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	door := dp.HTTPHandler("example.test")
	srv := &http.Server{Handler: door}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(dp.ProxyProtocolListener(hl)) }()
	t.Cleanup(func() { srv.Close(); <-done; door.CloseIdleConnections() })
	for _, tt := range []struct {
		header []byte
		status int
		xff    string
	}{
		{proxyHeader(t, 1, "192.0.2.10:1000"), http.StatusOK, "192.0.2.10"},
		{proxyHeader(t, 2, "[2001:db8::10]:1000"), http.StatusOK, "2001:db8::10"},
		{proxyHeader(t, 2, "198.51.100.1:1000"), http.StatusForbidden, ""},
	} {
		hc, err := balancerDial(tt.header)(context.Background(), "tcp", hl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		hc.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
		status, body := webGet(t, hc, bufio.NewReader(hc), "web.example.test")
		hc.Close()
		if status != tt.status {
			t.Errorf("HTTP for %q: status %d (%s), want %d", tt.header, status, body, tt.status)
			continue
		}
		if f := strings.Split(body, "|"); status == http.StatusOK && (len(f) < 3 || f[2] != tt.xff) {
			t.Errorf("HTTP: the server read %q, want X-Forwarded-For %s", body, tt.xff)
		}
	}
	// A connection from the balancer without a header gets no answer.
	hc, err := balancerDial(nil)(context.Background(), "tcp", hl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(time.Minute))
	io.WriteString(hc, "GET / HTTP/1.1\r\nHost: web.example.test\r\n\r\n")
	if b, _ := io.ReadAll(hc); len(b) != 0 {
		t.Errorf("HTTP without a header from the balancer: answered %q", b)
	}
}

// TestProxyProtocolFromSNI checks the TLS door behind a balancer: the
// server is told the client the header names, and gets the ClientHello
// that follows the header untouched.
func TestProxyProtocolFromSNI(t *testing.T) {
	dp := proxyFromDP()
	addr := startDP(t, dp)
	l := listen(t, nil, addr, "web")
	sni := serveSNIDoor(t, dp, "example.test")

	c, err := balancerDial(proxyHeader(t, 1, "192.0.2.11:4433"))(context.Background(), "tcp", sni)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: "web.example.test", InsecureSkipVerify: true})
	handshake := make(chan error, 1)
	go func() { handshake <- tc.Handshake() }()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RemoteAddr().(*Addr).Addr; got != "192.0.2.11:4433" {
		t.Errorf("the server was told the client is at %s", got)
	}
	s.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil || hdr[0] != 0x16 {
		t.Errorf("the server read % x, %v; want a TLS handshake record", hdr, err)
	}
	s.Close()
	<-handshake // fails: nobody answers it
}
