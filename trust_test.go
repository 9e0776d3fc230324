package rtcp

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// What a peer sent after a fake DP's challenge: its next message, or the
// error that ended the connection.
type afterChallenge struct {
	first *plan5.Aloha
	next  plan5.Message
	err   error
}

// fakeDP accepts connections on a loopback port (TLS with cfg, if set),
// answers each peer's Aloha with challenge, and reports what the peer
// sends next. It stops when the test ends.
func fakeDP(t *testing.T, cfg *tls.Config, challenge *plan5.Aloha) (string, <-chan afterChallenge) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan afterChallenge, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if cfg != nil {
					c = tls.Server(c, cfg)
				}
				r := plan5.NewReader(c, 0)
				first, err := plan5link.ReadAloha(r)
				if err != nil {
					got <- afterChallenge{err: err}
					return
				}
				if err := plan5link.WriteMessage(c, challenge, 0); err != nil {
					got <- afterChallenge{first: first, err: err}
					return
				}
				m, err := r.ReadMessage()
				got <- afterChallenge{first: first, next: m, err: err}
			})
		}
	})
	return ln.Addr().String(), got
}

// A client on TLS whose DP asks for a proof without binding it to the TLS
// connection sends none: only something that ended the client's TLS, to
// use the proof over another connection, asks that way.
func TestTLSBindingRequired(t *testing.T) {
	pki := newTestPKI(t, "dp")
	unbound := &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: "fake", Challenge: make([]byte, challengeLen)}
	addr, got := fakeDP(t, pki.serverConfig(), unbound)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		try  func() error
	}{
		{"dialer", func() error {
			d := Dialer{TLSConfig: pki.clientConfig(), Credential: alice, Transport: TransportYamux}
			c, err := d.DialContext(ctx, addr, "x")
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"listener", func() error {
			l, err := (&ListenConfig{TLSConfig: pki.clientConfig(), Credential: alice}).Listen(ctx, addr, "x")
			if err == nil {
				l.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.try()
			if err == nil || !strings.Contains(err.Error(), "did not bind authentication to this TLS connection") {
				t.Errorf("err = %v, want a refusal to prove without the TLS binding", err)
			}
			r := <-got
			if r.first == nil || r.first.Key != "alice" {
				t.Fatalf("the fake DP read %+v, %v; want an Aloha with key alice", r.first, r.err)
			}
			if a, ok := r.next.(*plan5.Aloha); ok && len(a.Proof) > 0 {
				t.Errorf("the peer sent a proof the DP did not bind to TLS: %+v", a)
			}
		})
	}
}

// acceptNames serves l, sending the client name of each session it
// accepts on the channel it returns, and closing the session.
func acceptNames(t *testing.T, l net.Listener) <-chan string {
	names := make(chan string, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			names <- c.RemoteAddr().(*Addr).Name
			c.Close()
		}
	})
	return names
}

// The server is told an authenticated client's key, whatever name the
// client gives; an anonymous client keeps the name it gives.
func TestClientNameIsKey(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys(), AnonymousClients: true}, Logger: testLogger()})
	names := acceptNames(t, listen(t, &ListenConfig{Credential: alice}, dp, "svc"))
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		for _, tc := range []struct {
			cred       *Credential
			name, want string
		}{
			{bob, "alice", "bob"},
			{bob, "", "bob"},
			{nil, "laptop", "laptop"},
		} {
			d := Dialer{Credential: tc.cred, Name: tc.name, Transport: tr}
			c, err := d.DialContext(context.Background(), dp, "svc")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if got := <-names; got != tc.want {
				t.Errorf("transport %v, key %v, name %q: the server is told %q, want %q", tr, tc.cred != nil, tc.name, got, tc.want)
			}
		}
	}
}
