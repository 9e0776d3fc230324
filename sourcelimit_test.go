package rtcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sourceNet hands in-memory connections to a DP's ServeConn, each from
// the remote address a test chooses.
type sourceNet struct {
	dp   *DiscoverPoint
	wg   sync.WaitGroup
	port int
}

// fromConn is a connection whose remote address is chosen.
type fromConn struct {
	net.Conn
	remote net.Addr
}

func (c *fromConn) RemoteAddr() net.Addr { return c.remote }

// from returns a connection to the DP from ip.
func (n *sourceNet) from(ip string) net.Conn {
	n.port++
	client, server := net.Pipe()
	sc := &fromConn{server, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000 + n.port}}
	n.wg.Go(func() { n.dp.ServeConn(sc) })
	return client
}

// dial dials the name nobody as d, from ip: nil means the DP admitted the
// peer (and said that nobody serves the name), else its refusal.
func (n *sourceNet) dial(ip string, d *Dialer) error {
	d.Dial = func(context.Context, string, string) (net.Conn, error) { return n.from(ip), nil }
	_, err := d.DialContext(context.Background(), "127.0.0.1:9000", "nobody")
	if errors.Is(err, ErrRefused) && strings.Contains(err.Error(), "no server named") {
		return nil
	}
	if err == nil {
		return errors.New("a session to nobody")
	}
	return err
}

func (n *sourceNet) close() {
	n.dp.Close()
	n.wg.Wait()
}

// boundLoopback makes dp bound loopback sources, as it bounds others, for
// tests that use only loopback addresses.
func boundLoopback(dp *DiscoverPoint) *DiscoverPoint {
	dp.init()
	dp.counts.sources.boundLoopback = true
	return dp
}

// TestHandshakesPerSource: connections that sit in their handshake from
// one address are bounded; another address, and the same one once a
// handshake ends, still get in.
func TestHandshakesPerSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &sourceNet{dp: boundLoopback(&DiscoverPoint{MaxHandshakesPerSource: 2, HandshakeTimeout: time.Minute, Logger: testLogger()})}
		defer n.close()
		silent := []net.Conn{n.from("127.0.0.1"), n.from("127.0.0.1")}
		defer silent[1].Close()
		synctest.Wait()

		err := n.dial("127.0.0.1", &Dialer{})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "MaxHandshakesPerSource") {
			t.Fatalf("a third handshake from one address: %v; want a refusal that names MaxHandshakesPerSource", err)
		}
		if err := n.dial("127.0.0.2", &Dialer{}); err != nil {
			t.Fatalf("another address: %v", err)
		}
		silent[0].Close()
		synctest.Wait() // the DP is done with it
		if err := n.dial("127.0.0.1", &Dialer{}); err != nil {
			t.Fatalf("after one handshake of the address ended: %v", err)
		}
		// A peer admitted no longer counts: many sessions of one client.
		for range 5 {
			if err := n.dial("127.0.0.1", &Dialer{}); err != nil {
				t.Fatal(err)
			}
		}
		if got := n.dp.Stats().Refused["source_handshakes"]; got != 1 {
			t.Errorf("Refused[source_handshakes] = %d, want 1", got)
		}
	})
}

// TestAuthFailuresPerSource: an address that fails to authenticate more
// often than MaxAuthFailuresPerSource a minute is refused, even with the
// right key, until enough time has passed; other addresses are not.
func TestAuthFailuresPerSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &sourceNet{dp: boundLoopback(&DiscoverPoint{Policy: &Policy{Keys: testKeys()}, MaxAuthFailuresPerSource: 3, Logger: testLogger()})}
		defer n.close()
		wrong := Dialer{Credential: &Credential{Key: "alice", Secret: []byte("not-alice-0123456789abcdef012345")}}
		for range 3 {
			wantUnauthorized(t, n.dial("127.0.0.1", &wrong), "authentication")
		}
		synctest.Wait() // the DP has counted the last one too
		err := n.dial("127.0.0.1", &Dialer{Credential: alice})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "MaxAuthFailuresPerSource") {
			t.Fatalf("the right key after 3 failures: %v; want a refusal that names MaxAuthFailuresPerSource", err)
		}
		if err := n.dial("127.0.0.2", &Dialer{Credential: alice}); err != nil {
			t.Fatalf("another address: %v", err)
		}
		time.Sleep(time.Minute/3 + time.Second) // one failure forgiven
		if err := n.dial("127.0.0.1", &Dialer{Credential: alice}); err != nil {
			t.Fatalf("the right key a third of a minute later: %v", err)
		}
		st := n.dp.Stats()
		if st.Refused["source_auth_failures"] != 1 || st.Refused["unauthorized"] != 3 {
			t.Errorf("Refused = %v, want 1 source_auth_failures and 3 unauthorized", st.Refused)
		}
	})
}

// TestLoopbackSourcesUnbounded: by default, loopback peers (this host's
// programs, a proxy in front of the DP) are not bounded.
func TestLoopbackSourcesUnbounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &sourceNet{dp: &DiscoverPoint{MaxHandshakesPerSource: 1, HandshakeTimeout: time.Minute}}
		defer n.close()
		silent := n.from("127.0.0.1")
		defer silent.Close()
		synctest.Wait()
		if err := n.dial("127.0.0.1", &Dialer{}); err != nil {
			t.Fatalf("a second handshake from loopback: %v", err)
		}
	})
}

func TestSourceOf(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, "127.0.0.1/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, "127.0.0.1/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, "::/64"},
	} {
		got, ok := sourceOf(c.addr)
		if !ok || got != netip.MustParsePrefix(c.want) {
			t.Errorf("sourceOf(%v) = %v, %v; want %s", c.addr, got, ok, c.want)
		}
	}
	if _, ok := sourceOf(pipeAddr{}); ok {
		t.Error("a pipe's address has a source")
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
