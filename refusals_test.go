package rtcp

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// servePortOn runs ServePort(l, name) on dp until the test ends and
// returns the address to dial.
func servePortOn(t *testing.T, dp *DiscoverPoint, l net.Listener, name string) string {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- dp.ServePort(l, name) }()
	t.Cleanup(func() {
		dp.Close()
		<-served
	})
	return l.Addr().String()
}

// wantReset dials addr and checks that the connection ends with a
// reset, not a clean FIN. It sends nothing: unread bytes would make any
// close a reset.
func wantReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
		_, err = io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF // io.Copy hides it
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a refused port-mode connection ended with %v; want a reset", err)
	}
}

// TestPortModeRefusalsReset: every refusal of a port-mode connection is
// a reset, whatever refuses it.
func TestPortModeRefusalsReset(t *testing.T) {
	newPort := func(t *testing.T) net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Run("no server", func(t *testing.T) {
		wantReset(t, servePortOn(t, new(DiscoverPoint), newPort(t), "nobody"))
	})
	t.Run("policy", func(t *testing.T) {
		dp := &DiscoverPoint{Policy: &Policy{AnonymousServers: true, Names: []NameRule{
			{Name: "db", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}}
		addr := startDP(t, dp)
		echo(t, listen(t, nil, addr, "db"))
		wantReset(t, servePortOn(t, dp, newPort(t), "db"))
	})
	t.Run("max sessions", func(t *testing.T) {
		dp := &DiscoverPoint{MaxSessionsPerServer: 1}
		addr := startDP(t, dp)
		echo(t, listen(t, nil, addr, "db"))
		port := servePortOn(t, dp, newPort(t), "db")
		first, err := net.Dial("tcp", port)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		ping(t, first, "the only session") // open at the DP
		wantReset(t, port)
	})
	t.Run("door full", func(t *testing.T) {
		b := &ConnBudget{Max: 10}
		d := b.Door("port", 1)
		dp := new(DiscoverPoint)
		addr := startDP(t, dp)
		echo(t, listen(t, nil, addr, "db"))
		port := servePortOn(t, dp, d.Listener(newPort(t)), "db")
		first, err := net.Dial("tcp", port)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		ping(t, first, "the door's only connection")
		wantReset(t, port)
	})
}

// TestTLSHandshakeFailuresCounted: a failed TLS handshake is counted,
// not only logged.
func TestTLSHandshakeFailuresCounted(t *testing.T) {
	pki := newTestPKI(t, "dp")
	dp := &DiscoverPoint{TLSConfig: pki.serverConfig()}
	addr := startDP(t, dp)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
	// A plain peer's Aloha where TLS is due; the DP counts, then closes.
	plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, N: "plain"}, 0)
	io.Copy(io.Discard, c)
	if got := dp.Stats().Refused["tls_handshake"]; got != 1 {
		t.Errorf("Refused[tls_handshake] = %d, want 1", got)
	}
}

// TestDataTokenRefusals: a data or spare link with a token the DP does
// not know is refused with the reason, counted and logged.
func TestDataTokenRefusals(t *testing.T) {
	events, logger := newLogEvents()
	dp := &DiscoverPoint{Logger: logger}
	addr := startDP(t, dp)
	for i, transport := range []string{wireData, wireSpare} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
		plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "x", Transport: transport, Token: "0123456789abcdef"}, 0)
		a, err := plan5link.ReadAloha(plan5.NewReader(c, 0))
		c.Close()
		if err != nil || !strings.Contains(a.Error, "token") {
			t.Fatalf("%s link with an unknown token: %+v, %v; want a refusal that names the token", transport, a, err)
		}
		events.wait(t, "rtcp: data link refused", i+1)
		if got := dp.Stats().Refused["data_token"]; got != uint64(i+1) {
			t.Errorf("Refused[data_token] = %d, want %d", got, i+1)
		}
	}
}

// nilAddrConn is a connection that cannot tell its peer's address.
type nilAddrConn struct{ net.Conn }

func (nilAddrConn) RemoteAddr() net.Addr { return nil }

// TestRelayWithoutRemoteAddr: Relay takes a connection whose RemoteAddr
// is nil (a door's own kind of conn) and carries it like any other.
func TestRelayWithoutRemoteAddr(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	echo(t, listen(t, nil, addr, "echo"))
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- dp.Relay(nilAddrConn{b}, "echo", "door") }()
	ping(t, a, "through a conn without an address")
	a.Close()
	<-done
}
