package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/internal/relay"
	"rtcp/protocol/plan5"
)

var (
	aliceSecret   = []byte("alice-0123456789abcdef0123456789")
	bobSecret     = []byte("bob-0123456789abcdef0123456789ab")
	mallorySecret = []byte("mallory-0123456789abcdef01234567")
	alice         = &Credential{Key: "alice", Secret: aliceSecret}
	bob           = &Credential{Key: "bob", Secret: bobSecret}
	mallory       = &Credential{Key: "mallory", Secret: mallorySecret}
)

func testKeys() map[string][]byte {
	return map[string][]byte{"alice": aliceSecret, "bob": bobSecret, "mallory": mallorySecret}
}

// ping checks that c echoes.
func ping(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: got %q, %v; want %q", buf, err, msg)
	}
}

// wantUnauthorized checks that err is a refusal for want of authorization
// that says what.
func wantUnauthorized(t *testing.T, err error, says string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error; want a refusal")
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error %q does not match ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), says) {
		t.Errorf("error %q does not say %q", err, says)
	}
}

func listenErr(dp, name string, lc ListenConfig) error {
	l, err := lc.Listen(context.Background(), dp, name)
	if err == nil {
		l.Close()
	}
	return err
}

func dialErr(dp, name string, d *Dialer) error {
	c, err := d.DialContext(context.Background(), dp, name)
	if err == nil {
		c.Close()
	}
	return err
}

func TestAuthRefusals(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}, Logger: testLogger()})
	l := listen(t, &ListenConfig{Credential: alice}, dp, "printer-7")
	echo(t, l)
	owners, err := Dial(dp, "printer-7") // no key: refused
	wantUnauthorized(t, err, "admits only peers with a key")
	owners, err = (&Dialer{Credential: alice}).DialContext(context.Background(), dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer owners.Close()
	ping(t, owners, "before")

	wrong := &Credential{Key: "alice", Secret: []byte("not-alice-0123456789abcdef012345")}
	unknown := &Credential{Key: "eve", Secret: aliceSecret}
	for _, tc := range []struct {
		name string
		cred *Credential
		says string
	}{
		{"no credential", nil, "admits only peers with a key"},
		{"wrong secret", wrong, `authentication with key "alice" failed`},
		{"unknown key", unknown, `authentication with key "eve" failed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
				wantUnauthorized(t, listenErr(dp, "other", ListenConfig{Credential: tc.cred, Transport: tr}), tc.says)
				wantUnauthorized(t, dialErr(dp, "printer-7", &Dialer{Credential: tc.cred, Transport: tr}), tc.says)
			}
		})
	}
	ping(t, owners, "after") // the owner's session is untouched
}

// recorder is a Dial that records what the first connection it opens
// writes.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type recordConn struct {
	net.Conn
	r *recorder
}

func (c recordConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.r.buf.Write(p)
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

func (r *recorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return recordConn{c, r}, nil
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// readAll reads messages from c until it ends.
func readAll(t *testing.T, c net.Conn) []plan5.Message {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := plan5.NewReader(c, 0)
	var ms []plan5.Message
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return ms
		}
		ms = append(ms, m)
	}
}

func TestAuthReplay(t *testing.T) {
	dpv := &DiscoverPoint{Policy: &Policy{Keys: testKeys()}, Logger: testLogger()}
	dp := startDP(t, dpv)
	var rec recorder
	l := listen(t, &ListenConfig{Credential: alice, Dial: rec.dial, Owner: "o1"}, dp, "printer-7")
	echo(t, l)
	// The server wrote its Aloha, then its proof Aloha.
	captured := rec.bytes()
	r := plan5.NewReader(bytes.NewReader(captured), 0)
	first, err := plan5link.ReadAloha(r)
	if err != nil || first.Key != "alice" {
		t.Fatalf("captured first Aloha %+v, %v", first, err)
	}
	second, err := plan5link.ReadAloha(r)
	if err != nil || len(second.Proof) == 0 {
		t.Fatalf("captured second Aloha %+v, %v", second, err)
	}
	// Replay the whole handshake on a new connection, as someone who saw
	// it on the wire would; the name is still held by the same owner, so
	// only the proof can refuse it.
	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(captured[:len(plan5.AppendMessage(nil, first))])
	br := bufio.NewReader(c)
	pr := plan5.NewReader(br, 0)
	ch, err := plan5link.ReadAloha(pr)
	if err != nil || len(ch.Challenge) != challengeLen {
		t.Fatalf("want a challenge, got %+v, %v", ch, err)
	}
	c.Write(plan5.AppendMessage(nil, second))
	refusal, err := plan5link.ReadAloha(pr)
	if err != nil {
		t.Fatalf("want a refusal Aloha, got %v", err)
	}
	wantUnauthorized(t, &RefusedError{Reason: refusal.Error}, `authentication with key "alice" failed`)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := pr.ReadMessage(); err != io.EOF {
		t.Errorf("after the refusal: %v, want the DP to close (io.EOF)", err)
	}
	// The owner is unaffected.
	cc, err := (&Dialer{Credential: bob}).DialContext(context.Background(), dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	ping(t, cc, "still mine")
	cc.Close()
}

func TestAuthPlainPeer(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}})
	for _, tc := range []struct{ name, send string }{
		{"server", "0\n{\"V\":10000,\"R\":2,\"N\":\"printer-7\"}\n"},
		{"client", "0\n{\"V\":10000,\"R\":3,\"N\":\"\"}\n1\n{\"N\":\"printer-7\"}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", dp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			ms := readAll(t, c)
			if len(ms) != 1 {
				t.Fatalf("got %d messages, want one refusal: %v", len(ms), ms)
			}
			a, ok := ms[0].(*plan5.Aloha)
			if !ok || a.R != plan5.RoleDP || !strings.HasPrefix(a.Error, unauthorizedPrefix) || len(a.Challenge) != 0 {
				t.Fatalf("got %+v, want an Aloha refusing with a reason", ms[0])
			}
		})
	}
}

func TestOwnedName(t *testing.T) {
	dpv := &DiscoverPoint{Policy: &Policy{
		Keys:             testKeys(),
		AnonymousServers: true,
		AnonymousClients: true,
		Names:            []NameRule{{Name: "printer-*", Owners: []string{"alice"}}},
	}, Logger: testLogger()}
	dp := startDP(t, dpv)
	l := listen(t, &ListenConfig{Credential: alice}, dp, "printer-7")
	echo(t, l)
	c, err := Dial(dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping(t, c, "before")

	for _, tc := range []struct {
		name string
		cred *Credential
	}{{"another key", mallory}, {"no key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			err := listenErr(dp, "printer-7", ListenConfig{Credential: tc.cred, Owner: "squatter"})
			wantUnauthorized(t, err, `name "printer-7" belongs to another key`)
			// Even a name no one holds yet.
			wantUnauthorized(t, listenErr(dp, "printer-8", ListenConfig{Credential: tc.cred}), "belongs to another key")
		})
	}
	// A forged Owner does not make an anonymous server the key's owner.
	err = listenErr(dp, "free", ListenConfig{Owner: "key:alice"})
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c, "after")

	// The owner restarted: a new process (another Owner) with the key
	// gets its name back at once, while its old link still stands.
	l2 := listen(t, &ListenConfig{Credential: alice, Owner: "restarted"}, dp, "printer-7")
	echo(t, l2)
	l.Close()
	c2, err := Dial(dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c2, "new process")
	c2.Close()
}

func TestAllowList(t *testing.T) {
	pol := &Policy{
		Keys:             testKeys(),
		AnonymousServers: true,
		AnonymousClients: true,
		Names: []NameRule{
			{Name: "db", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Name: "vault", Clients: []string{"alice"}},
		},
	}
	dpv := &DiscoverPoint{Policy: pol, Logger: testLogger()}
	dp := startDP(t, dpv)
	accepted := make(chan net.Conn, 10)
	for _, name := range []string{"db", "vault"} {
		l := listen(t, nil, dp, name)
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		})
		t.Cleanup(func() { l.Close(); wg.Wait() })
	}
	t.Run("indirect client outside", func(t *testing.T) {
		for _, tr := range []Transport{TransportJSON, TransportYamux} {
			var re *RefusedError
			err := dialErr(dp, "db", &Dialer{Transport: tr, Credential: alice})
			if !errors.As(err, &re) {
				t.Fatalf("%v: %v, want a RefusedError", tr, err)
			}
			wantUnauthorized(t, err, `clients from 127.0.0.1`)
		}
	})
	t.Run("port mode outside", func(t *testing.T) {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- dpv.ServePort(pl, "db") }()
		defer func() { pl.Close(); <-served }()
		c, err := net.Dial("tcp", pl.Addr().String())
		if errors.Is(err, syscall.ECONNRESET) {
			return // refused, with a reset, before connect returned
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("port-mode read: %d, %v; want the DP to close the connection", n, err)
		}
	})
	t.Run("client without the name's key", func(t *testing.T) {
		wantUnauthorized(t, dialErr(dp, "vault", &Dialer{}), `server "vault" takes only clients with a key`)
		wantUnauthorized(t, dialErr(dp, "vault", &Dialer{Credential: bob, Transport: TransportYamux}), `key "bob" may not open sessions to server "vault"`)
	})
	select {
	case c := <-accepted:
		t.Fatalf("the server saw a refused client: %v", c.RemoteAddr())
	default:
	}
	// Authorisation is checked at each open: let loopback in, and the
	// next session (only that one) reaches the server.
	pol2 := *pol
	pol2.Names = []NameRule{{Name: "db", Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, pol.Names[1]}
	if err := dpv.SetPolicy(&pol2); err != nil {
		t.Fatal(err)
	}
	c, err := (&Dialer{Name: "first-allowed"}).DialContext(context.Background(), dp, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s := <-accepted; !strings.HasPrefix(s.RemoteAddr().String(), "first-allowed@") {
		t.Errorf("the server's first session is from %v", s.RemoteAddr())
	} else {
		s.Close()
	}
	c, err = (&Dialer{Credential: alice}).DialContext(context.Background(), dp, "vault")
	if err != nil {
		t.Fatal(err)
	}
	(<-accepted).Close()
	c.Close()
}

func TestSetPolicy(t *testing.T) {
	dpv := &DiscoverPoint{Policy: &Policy{Keys: testKeys(), AnonymousServers: true, AnonymousClients: true}, Logger: testLogger()}
	dp := startDP(t, dpv)
	squatter := listen(t, nil, dp, "printer-7")
	echo(t, squatter)
	bobs, err := (&Dialer{Credential: bob}).DialContext(context.Background(), dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	bobs.Close()

	// The name now belongs to alice, and bob's key is revoked.
	keys := testKeys()
	delete(keys, "bob")
	if err := dpv.SetPolicy(&Policy{Keys: keys, AnonymousServers: true, AnonymousClients: true,
		Names: []NameRule{{Name: "printer-*", Owners: []string{"alice"}}}}); err != nil {
		t.Fatal(err)
	}
	wantUnauthorized(t, dialErr(dp, "printer-7", &Dialer{Credential: bob}), `key "bob"`)
	// The owner takes the name back from the squatter.
	l := listen(t, &ListenConfig{Credential: alice}, dp, "printer-7")
	echo(t, l)
	c, err := Dial(dp, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c, "mine")
	c.Close()
	if err := dpv.SetPolicy(&Policy{Keys: map[string][]byte{"short": []byte("x")}}); err == nil {
		t.Error("SetPolicy took a policy with a short secret")
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		says string
	}{
		{Policy{Keys: map[string][]byte{"a": []byte("short")}}, "use at least 16"},
		{Policy{Keys: map[string][]byte{"a:b": aliceSecret}}, "contain no ':'"},
		{Policy{Names: []NameRule{{Name: "[x"}}}, "bad pattern"},
		{Policy{Names: []NameRule{{Name: "x", Owners: []string{"nobody"}}}}, `names key "nobody"`},
		{Policy{Names: []NameRule{{Name: "x", Allow: []netip.Prefix{{}}}}}, "invalid network"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Validate(%+v) = %v, want an error saying %q", tc.p, err, tc.says)
		}
	}
	dp := &DiscoverPoint{Policy: &Policy{Keys: map[string][]byte{"a": []byte("short")}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.Serve(l); err == nil || !strings.Contains(err.Error(), "use at least 16") {
		t.Errorf("Serve with a bad policy: %v", err)
	}
	dp.Close()
	if ok, _ := matchName("site-*", "site-a/b"); !ok {
		t.Error(`"site-*" does not match "site-a/b"`)
	}
}

func TestParseCredential(t *testing.T) {
	c, err := ParseCredential("alice:" + string(aliceSecret) + "\n")
	if err != nil || c.Key != "alice" || !bytes.Equal(c.Secret, aliceSecret) {
		t.Fatalf("ParseCredential = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "alice", ":" + string(aliceSecret), "alice:", "alice:short"} {
		if _, err := ParseCredential(bad); err == nil {
			t.Errorf("ParseCredential(%q) succeeded", bad)
		}
	}
}

// testPKI is a CA made for one test and a certificate it signed for the
// loopback addresses.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
}

func newTestPKI(t testing.TB, cn string) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testPKI{pool: pool, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}}
}

func (p *testPKI) clientConfig() *tls.Config { return &tls.Config{RootCAs: p.pool} }

func TestTLS(t *testing.T) {
	pki := newTestPKI(t, "dp")
	for _, withKey := range []bool{false, true} {
		var pol *Policy
		var cred *Credential
		name := "tls"
		if withKey {
			pol, cred, name = &Policy{Keys: testKeys()}, alice, "tls+key"
		}
		t.Run(name, func(t *testing.T) {
			dp := startDP(t, &DiscoverPoint{TLSConfig: pki.serverConfig(), Policy: pol, Logger: testLogger()})
			for _, m := range []struct {
				name           string
				server, client Transport
			}{
				{"json/json", TransportJSON, TransportJSON},
				{"yamux/raw", TransportYamux, TransportYamux},
				{"tcp/raw", TransportTCP, TransportYamux},
			} {
				t.Run(m.name, func(t *testing.T) {
					l := listen(t, &ListenConfig{Transport: m.server, TLSConfig: pki.clientConfig(), Credential: cred}, dp, "tls-"+strings.ReplaceAll(m.name, "/", "-"))
					echo(t, l)
					d := Dialer{Transport: m.client, TLSConfig: pki.clientConfig(), Credential: cred}
					c, err := d.DialContext(context.Background(), dp, "tls-"+strings.ReplaceAll(m.name, "/", "-"))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					msg := bytes.Repeat([]byte("over TLS "), 50000)
					go func() {
						c.Write(msg)
						c.(*Conn).CloseWrite()
					}()
					got, err := io.ReadAll(c)
					if err != nil || !bytes.Equal(got, msg) {
						t.Fatalf("echo: %d bytes, %v; want %d", len(got), err, len(msg))
					}
				})
			}
			// A client that does not trust the DP's CA, or speaks no TLS.
			other := newTestPKI(t, "other")
			err := dialErr(dp, "tls-json-json", &Dialer{TLSConfig: other.clientConfig(), Credential: cred})
			var ue x509.UnknownAuthorityError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "TLS handshake") {
				t.Errorf("dial with another CA: %v, want an x509.UnknownAuthorityError", err)
			}
			if err := dialErr(dp, "tls-json-json", &Dialer{Credential: cred}); err == nil {
				t.Error("a client without TLS got a session from a TLS DP")
			}
		})
	}
}

// TestTLSBinding: a man in the middle that the client trusts by mistake
// (InsecureSkipVerify) terminates TLS and relays the handshake to the DP
// over its own TLS connection. The proof is bound to the client's TLS
// connection, so the DP refuses it.
func TestTLSBinding(t *testing.T) {
	pki := newTestPKI(t, "dp")
	dp := startDP(t, &DiscoverPoint{TLSConfig: pki.serverConfig(), Policy: &Policy{Keys: testKeys()}})
	mitmPKI := newTestPKI(t, "mitm")
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { ml.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := ml.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				front := tls.Server(c, mitmPKI.serverConfig())
				back, err := tls.Dial("tcp", dp, pki.clientConfig())
				if err != nil {
					return
				}
				relay.Join(front, back, nil)
			})
		}
	})
	naive := &tls.Config{InsecureSkipVerify: true}
	wantUnauthorized(t, dialErr(ml.Addr().String(), "x", &Dialer{TLSConfig: naive, Credential: alice}), "failed")
	wantUnauthorized(t, listenErr(ml.Addr().String(), "x", ListenConfig{TLSConfig: naive, Credential: alice}), "failed")
}

func TestDirectTLS(t *testing.T) {
	pki := newTestPKI(t, "direct")
	l, err := (&ListenConfig{TLSConfig: pki.serverConfig()}).Listen(context.Background(), "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, l)
	c, err := (&Dialer{TLSConfig: pki.clientConfig()}).DialContext(context.Background(), l.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("direct TLS dial returned %T", c)
	}
	ping(t, c, "direct")
}

// FuzzAuthHandshake feeds a DP that requires a key whatever a peer may
// send: nothing gets registered or relayed without the secret, and bad
// input ends only that connection.
func FuzzAuthHandshake(f *testing.F) {
	ours := &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "printer-7", Owner: "o", Key: "alice"}
	proof := &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "printer-7", Proof: make([]byte, 32)}
	f.Add(append(plan5.AppendMessage(nil, ours), plan5.AppendMessage(nil, proof)...))
	ic := &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Key: "bob", Transport: wireRaw}
	f.Add(append(append(plan5.AppendMessage(nil, ic), plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Proof: []byte("x")})...),
		plan5.AppendMessage(nil, &plan5.Connect{N: "printer-7"})...))
	f.Add(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "x"}))
	f.Add(append(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC}), plan5.AppendMessage(nil, &plan5.Connect{N: "x"})...))
	f.Add(append(plan5.AppendMessage(nil, ours), plan5.AppendMessage(nil, &plan5.Connect{N: "x"})...))
	f.Fuzz(func(t *testing.T, in []byte) {
		reg := new(MemoryRegistry)
		dp := &DiscoverPoint{Registry: reg, Policy: &Policy{Keys: testKeys()}, HandshakeTimeout: 5 * time.Second}
		defer dp.Close()
		dp.init()
		a, b := net.Pipe()
		go io.Copy(io.Discard, b)
		go func() { b.Write(in); b.Close() }()
		if dp.serveConn(a) {
			t.Fatal("the DP kept a connection that proved nothing")
		}
		a.Close()
		if reg.Len() != 0 {
			t.Fatal("a name was registered without the secret")
		}
	})
}

// TestAuthProofVector checks the test vector of SPEC.md, "Authentication",
// which was computed independently of this code.
func TestAuthProofVector(t *testing.T) {
	ch := make([]byte, 32)
	for i := range ch {
		ch[i] = byte(i)
	}
	a := &plan5.Aloha{R: plan5.RoleIS, N: "printer-7", Key: "alice", Owner: "3f2a"}
	got := base64.StdEncoding.EncodeToString(authProof([]byte("0123456789abcdef0123456789abcdef"), ch, a, nil))
	if want := "hsZUQow6ElKuBPMnTj0yqIZ+jpn64LeqbmgYs4ZUJc4="; got != want {
		t.Errorf("proof = %s, want %s", got, want)
	}
}
