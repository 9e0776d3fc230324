package rtcp

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/netip"
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

var clusterCred = &Credential{Key: "cluster", Secret: []byte("cluster-0123456789abcdef01234567")}

// clusterKeys are testKeys and the key the DPs of a test cluster prove
// to each other.
func clusterKeys() map[string][]byte {
	k := testKeys()
	k[clusterCred.Key] = clusterCred.Secret
	return k
}

// startDPAt runs dp on a loopback port until the test ends; with
// advertise, it advertises that port.
func startDPAt(t *testing.T, dp *DiscoverPoint, advertise bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if advertise {
		dp.Advertise = l.Addr().String()
	}
	if dp.Logger == nil {
		dp.Logger = testLogger()
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	t.Cleanup(func() {
		dp.Close()
		<-served
	})
	return l.Addr().String()
}

// relayingDP is a fake DP at an address someone who can write the
// cluster's registry pointed a name at. It takes the hop a real DP
// makes to it, opens its own connection to target, and relays the
// authentication exchange between them, changing the hop's first Aloha
// with tamper; it reports target's answer to the proof.
func relayingDP(t *testing.T, target string, tamper func(*plan5.Aloha)) (string, <-chan *plan5.Aloha) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answers := make(chan *plan5.Aloha, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	relay := func(hop net.Conn) error {
		defer hop.Close()
		hop.SetDeadline(time.Now().Add(10 * time.Second))
		hr := plan5.NewReader(hop, 0)
		first, err := plan5link.ReadAloha(hr)
		if err != nil {
			return err
		}
		tamper(first)
		back, err := net.Dial("tcp", target)
		if err != nil {
			return err
		}
		defer back.Close()
		back.SetDeadline(time.Now().Add(10 * time.Second))
		br := plan5.NewReader(back, 0)
		if err := plan5link.WriteMessage(back, first, 0); err != nil {
			return err
		}
		challenge, err := plan5link.ReadAloha(br)
		if err != nil {
			return err
		}
		if err := plan5link.WriteMessage(hop, challenge, 0); err != nil {
			return err
		}
		proof, err := plan5link.ReadAloha(hr)
		if err != nil {
			return err
		}
		if err := plan5link.WriteMessage(back, proof, 0); err != nil {
			return err
		}
		answer, err := plan5link.ReadAloha(br)
		if err != nil {
			return err
		}
		answers <- answer
		return nil
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				if err := relay(c); err != nil {
					answers <- &plan5.Aloha{Error: "relay: " + err.Error()}
				}
			})
		}
	})
	return ln.Addr().String(), answers
}

// Someone who can write the cluster's registry points a name at a fake
// DP. The DP that carries a session there proves its cluster key to it,
// and the fake relays that proof to a real DP, to log in there as a DP
// of the cluster: the proof names the DP it was meant for, so no other
// DP takes it, changed or not.
func TestClusterHopProofNotRelayable(t *testing.T) {
	reg := new(MemoryRegistry)
	pol := &Policy{Keys: clusterKeys(), AnonymousClients: true}
	member := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol}, true)
	lone := startDPAt(t, &DiscoverPoint{Policy: pol}, false)
	forwarder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol, Peer: &Dialer{Credential: clusterCred}}, true)
	for _, target := range []struct{ name, addr string }{{"to a DP of the cluster", member}, {"to a DP of no cluster", lone}} {
		for _, tc := range []struct {
			name   string
			tamper func(*plan5.Aloha)
			says   string
		}{
			{"as it is", func(*plan5.Aloha) {}, "is meant for the DP at"},
			{"without To", func(a *plan5.Aloha) { a.To, a.ClientKey, a.ClientAddr = "", "", "" }, "failed"},
			{"To the target", func(a *plan5.Aloha) { a.To = target.addr }, "failed"},
		} {
			t.Run(target.name+"/"+tc.name, func(t *testing.T) {
				fake, answers := relayingDP(t, target.addr, tc.tamper)
				_, port, _ := net.SplitHostPort(fake)
				name := "printer-" + port
				if err := reg.Register(context.Background(), Registration{Name: name, Owner: "mallory", DP: fake}); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if c, err := (&Dialer{Transport: TransportYamux}).DialContext(ctx, forwarder, name); err == nil {
					c.Close()
				}
				answer := <-answers
				if answer.Error == "" {
					t.Fatalf("the DP took a proof relayed from another DP's hop: it answered %+v", answer)
				}
				wantUnauthorized(t, &RefusedError{Reason: answer.Error}, tc.says)
			})
		}
	}
}

// The DPs of a cluster with keys carry sessions to each other: a proof
// meant for the DP that gets it passes.
func TestClusterHopWithKeys(t *testing.T) {
	reg := new(MemoryRegistry)
	pol := &Policy{Keys: clusterKeys()}
	holder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol}, true)
	forwarder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol, Peer: &Dialer{Credential: clusterCred}}, true)
	echo(t, listen(t, &ListenConfig{Credential: alice, Transport: TransportYamux}, holder, "svc"))
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		c, err := (&Dialer{Credential: bob, Transport: tr}).DialContext(context.Background(), forwarder, "svc")
		if err != nil {
			t.Fatalf("transport %v: %v", tr, err)
		}
		ping(t, c, "through two DPs")
		c.Close()
	}
}

// TestHopProofVector checks the test vector of SPEC.md, "Authentication",
// for a proof that names its DP and its client; it was computed with
// Python's hmac module, apart from this code.
func TestHopProofVector(t *testing.T) {
	ch := make([]byte, 32)
	for i := range ch {
		ch[i] = byte(i)
	}
	a := &plan5.Aloha{R: plan5.RoleIC, N: "alice", Key: "cluster", Via: "10.0.0.3:9000", To: "10.0.0.1:9000", ClientKey: "alice", ClientAddr: "203.0.113.5:40112"}
	got := base64.StdEncoding.EncodeToString(authProof([]byte("0123456789abcdef0123456789abcdef"), ch, a, nil))
	if want := "OU03UnQwYtH19rSGw1Ob/YaPBbw9EqtR6js/Gga5EHs="; got != want {
		t.Errorf("proof = %s, want %s", got, want)
	}
}

// dialFrom is a Dialer.Dial that dials from the loopback address ip.
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

// accepted is what a server learns of a session: the client's name and
// address.
func acceptAddrs(t *testing.T, l net.Listener) <-chan *Addr {
	addrs := make(chan *Addr, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			addrs <- c.RemoteAddr().(*Addr)
			c.Close()
		}
	})
	return addrs
}

// A DP of the cluster that carries a session speaks for its client: the
// DP that holds the name checks its rules against the client's key and
// address, not the carrying DP's, and tells the server who the client
// is. Only a key the holder lists in DPs may speak for a client.
func TestClusterHopSpeaksForClient(t *testing.T) {
	rule := NameRule{Name: "svc", Clients: []string{"alice"}, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	reg := new(MemoryRegistry)
	holderPol := &Policy{Keys: clusterKeys(), DPs: []string{clusterCred.Key}, Names: []NameRule{rule}}
	holderDP := &DiscoverPoint{Registry: reg, Policy: holderPol}
	holder := startDPAt(t, holderDP, true)
	// The carrying DP checks nothing of svc: what it lets through, the
	// holder must judge.
	forwarder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: &Policy{Keys: clusterKeys(), AnonymousClients: true}, Peer: &Dialer{Credential: clusterCred}}, true)
	addrs := acceptAddrs(t, listen(t, &ListenConfig{Credential: bob, Transport: TransportYamux}, holder, "svc"))

	for _, tc := range []struct {
		name string
		cred *Credential
		from string
		says string // "": the session opens
	}{
		{"alice from an allowed address", alice, "127.0.0.2", ""},
		{"bob from an allowed address", bob, "127.0.0.2", `key "bob" may not open sessions`},
		{"alice from another address", alice, "127.0.0.3", "clients from 127.0.0.3"},
		{"anonymous from an allowed address", nil, "127.0.0.2", "takes only clients with a key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, tr := range []Transport{TransportJSON, TransportYamux} {
				d := Dialer{Credential: tc.cred, Name: "laptop", Transport: tr, Dial: dialFrom(tc.from)}
				c, err := d.DialContext(context.Background(), forwarder, "svc")
				if tc.says != "" {
					wantUnauthorized(t, err, tc.says)
					if err == nil {
						c.Close()
					}
					continue
				}
				if err != nil {
					t.Fatalf("transport %v: %v", tr, err)
				}
				c.Close()
				a := <-addrs
				if host, _, _ := net.SplitHostPort(a.Addr); a.Name != tc.cred.Key || host != tc.from {
					t.Errorf("transport %v: the server is told the client is %q at %s, want %q at %s:*", tr, a.Name, a.Addr, tc.cred.Key, tc.from)
				}
			}
		})
	}

	t.Run("a key that is not a DP's", func(t *testing.T) {
		// mallory makes a hop of its own that claims to carry alice.
		d := Dialer{Credential: mallory, Transport: TransportYamux, Dial: dialFrom("127.0.0.2")}
		hop := func(a *plan5.Aloha) {
			a.Via, a.To, a.ClientKey, a.ClientAddr = forwarder, holder, "alice", "127.0.0.2:1"
		}
		c, err := d.dial(context.Background(), holder, "svc", dialAs{transport: d.Transport, hop: hop})
		wantUnauthorized(t, err, `key "mallory" may not open sessions`)
		if err == nil {
			c.Close()
		}
	})

	t.Run("a DP key the holder no longer lists", func(t *testing.T) {
		pol := *holderPol
		pol.DPs = nil
		if err := holderDP.SetPolicy(&pol); err != nil {
			t.Fatal(err)
		}
		defer holderDP.SetPolicy(holderPol)
		d := Dialer{Credential: alice, Transport: TransportYamux, Dial: dialFrom("127.0.0.2")}
		c, err := d.DialContext(context.Background(), forwarder, "svc")
		wantUnauthorized(t, err, `key "cluster" may not open sessions`)
		if err == nil {
			c.Close()
		}
	})
}

func TestPolicyValidateDPs(t *testing.T) {
	p := &Policy{Keys: clusterKeys(), DPs: []string{"cluster", "nobody"}}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), `DPs names key "nobody"`) {
		t.Errorf("Validate = %v, want it to name the unknown key of DPs", err)
	}
	p.DPs = p.DPs[:1]
	if err := p.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
}

// Hops over TLS: the proof is bound to the DP dialled and to the TLS
// connection, and the DP that holds the name checks the client it names.
func TestClusterHopOverTLS(t *testing.T) {
	pki := newTestPKI(t, "dp")
	reg := new(MemoryRegistry)
	pol := &Policy{Keys: clusterKeys(), DPs: []string{clusterCred.Key}, Names: []NameRule{{Name: "svc", Clients: []string{"bob"}}}}
	holder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol, TLSConfig: pki.serverConfig()}, true)
	peer := &Dialer{Credential: clusterCred, TLSConfig: pki.clientConfig()}
	forwarder := startDPAt(t, &DiscoverPoint{Registry: reg, Policy: pol, TLSConfig: pki.serverConfig(), Peer: peer}, true)
	echo(t, listen(t, &ListenConfig{Credential: alice, TLSConfig: pki.clientConfig()}, holder, "svc"))
	d := Dialer{Credential: bob, TLSConfig: pki.clientConfig(), Transport: TransportYamux}
	c, err := d.DialContext(context.Background(), forwarder, "svc")
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c, "over two TLS legs")
	c.Close()
	d.Credential = alice
	wantUnauthorized(t, dialErr(forwarder, "svc", &d), `key "alice" may not open sessions`)
}
