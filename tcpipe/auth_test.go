package tcpipe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
)

var testSecret = []byte("a shared secret of 32 bytes, ok!")

// authMsg builds an authentication message by hand from SPEC.md's layout:
// "rtcp", the body size big-endian, the step, the payload.
func authMsg(step byte, payload ...[]byte) []byte {
	body := append([]byte{step}, bytes.Join(payload, nil)...)
	b := append([]byte("rtcp"), binary.BigEndian.AppendUint32(nil, uint32(len(body)))...)
	return append(b, body...)
}

// proofOf computes a proof from SPEC.md's words, not with the codec.
func proofOf(secret []byte, label string, ns, nc []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(ns)
	m.Write(nc)
	return m.Sum(nil)
}

// readAuthMsg reads one authentication message of step with a payload of
// n bytes and returns the payload.
func readAuthMsg(t *testing.T, c net.Conn, step byte, n int, what string) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, 9+n)
	if k, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("%s: read % x, then %v", what, b[:k], err)
	}
	if want := authMsg(step, make([]byte, n))[:9]; !bytes.Equal(b[:9], want) {
		t.Fatalf("%s: header % x, want % x", what, b[:9], want)
	}
	return b[9:]
}

// prove plays a client that holds secret: it reads the challenge and
// sends its proof, and returns both nonces.
func prove(t *testing.T, c net.Conn, secret []byte) (ns, nc []byte) {
	t.Helper()
	ns = readAuthMsg(t, c, 1, 32, "the server's Challenge")
	nc = bytes.Repeat([]byte{0x5c}, 32)
	c.Write(authMsg(2, nc, proofOf(secret, "rtcp-tcpipe-v1 client", ns, nc)))
	return ns, nc
}

// TestSecondPartnerRefused: without a secret, a second partner is refused
// while the first is up, and the first carries on with its user.
func TestSecondPartnerRefused(t *testing.T) {
	p := freePort(t, "127.0.0.2")
	logs, logger := flowtest.NewLogs()
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Logger: logger}
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	partner := dial(t, partnerAddr)
	wait(t, up, "the first partner's link")
	user := dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, partner, wireFrame(1, 0, p, nil), "Connect for the user")

	stranger := dial(t, partnerAddr)
	expectEnd(t, stranger, "a second partner while the first is up")
	refused := logs.Find(slog.LevelWarn, "tcpipe: partner refused")
	if len(refused) != 1 || refused[0].Attrs["remote"] != stranger.LocalAddr().String() ||
		refused[0].Attrs["partner"] != partner.LocalAddr().String() || !strings.Contains(refused[0].Attrs["reason"], "one partner at a time") {
		t.Errorf("logged %v; want one refusal of %v that names the partner %v", refused, stranger.LocalAddr(), partner.LocalAddr())
	}

	partner.Write(wireFrame(0, 1, p, []byte("still here")))
	expectBytes(t, user, []byte("still here"), "the user, through the first partner")
	user.Write([]byte("and you"))
	expectBytes(t, partner, wireFrame(0, 0, p, []byte("and you")), "the first partner, from the user")
}

// TestSecretWire plays a client that holds the secret, by hand from
// SPEC.md: the server challenges at once, checks the proof, proves itself
// back, and then carries frames.
func TestSecretWire(t *testing.T) {
	p := freePort(t, "127.0.0.2")
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Secret: testSecret, Logger: testLogger(t)}
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	partner := dial(t, partnerAddr)
	ns, nc := prove(t, partner, testSecret)
	welcome := readAuthMsg(t, partner, 3, 32, "the server's Welcome")
	if want := proofOf(testSecret, "rtcp-tcpipe-v1 server", ns, nc); !bytes.Equal(welcome, want) {
		t.Fatalf("the server's proof is % x, want % x", welcome, want)
	}
	wait(t, up, "the link after the handshake")
	dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, partner, wireFrame(1, 0, p, nil), "Connect for a user, after the handshake")
}

// TestSecretRefusals checks that a server with a secret takes no partner
// that does not prove it, tells it why where it can, logs it, and keeps
// the partner it has.
func TestSecretRefusals(t *testing.T) {
	tests := []struct {
		name    string
		play    func(t *testing.T, c net.Conn)
		refusal string // the Refusal's reason; empty: none is sent
		logged  string
	}{
		{"wrong secret", func(t *testing.T, c net.Conn) { prove(t, c, []byte("another secret of sixteen bytes")) },
			"wrong proof: the two instances do not hold the same secret", "wrong proof"},
		{"an original's frame", func(t *testing.T, c net.Conn) {
			readAuthMsg(t, c, 1, 32, "the server's Challenge")
			c.Write(wireFrame(1, 0, 80, nil))
		}, "", "it holds no shared secret"},
		{"a Welcome where the Proof is due", func(t *testing.T, c net.Conn) {
			readAuthMsg(t, c, 1, 32, "the server's Challenge")
			c.Write(authMsg(3, make([]byte, 32)))
		}, "authentication Welcome where the Proof was due", "Welcome where the Proof was due"},
		{"garbage", func(t *testing.T, c net.Conn) {
			readAuthMsg(t, c, 1, 32, "the server's Challenge")
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		}, "", "the peer is not an rtcp tcpipe instance"},
	}
	p := freePort(t, "127.0.0.2")
	logs, logger := flowtest.NewLogs()
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Secret: testSecret, Logger: logger}
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	partner := dial(t, partnerAddr)
	prove(t, partner, testSecret)
	readAuthMsg(t, partner, 3, 32, "the server's Welcome")
	wait(t, up, "the partner's link")
	user := dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, partner, wireFrame(1, 0, p, nil), "Connect for the user")

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(logs.Find(slog.LevelWarn, "tcpipe: partner refused"))
			c := dial(t, partnerAddr)
			tt.play(t, c)
			if tt.refusal != "" {
				got := readAuthMsg(t, c, 4, len(tt.refusal), "the Refusal")
				if string(got) != tt.refusal {
					t.Errorf("refused with %q, want %q", got, tt.refusal)
				}
			}
			expectEnd(t, c, "a partner that did not prove the secret")
			refused := logs.Find(slog.LevelWarn, "tcpipe: partner refused")
			if len(refused) != before+1 || !strings.Contains(refused[before].Attrs["reason"], tt.logged) {
				t.Errorf("logged %v; want a refusal whose reason says %q", refused[before:], tt.logged)
			}
			// The partner that proved the secret still carries its user.
			partner.Write(wireFrame(0, 1, p, []byte(tt.name)))
			expectBytes(t, user, []byte(tt.name), "the user, through the partner")
		})
	}
}

// TestSecretReplace: a partner that proves the secret replaces the link
// before it (the partner reconnected), which closes the old link and its
// users; the server logs it.
func TestSecretReplace(t *testing.T) {
	p := freePort(t, "127.0.0.2")
	logs, logger := flowtest.NewLogs()
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Secret: testSecret, Logger: logger}
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	old := dial(t, partnerAddr)
	prove(t, old, testSecret)
	readAuthMsg(t, old, 3, 32, "the Welcome")
	wait(t, up, "the first link")
	user := dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, old, wireFrame(1, 0, p, nil), "Connect on the first link")

	partner := dial(t, partnerAddr)
	prove(t, partner, testSecret)
	readAuthMsg(t, partner, 3, 32, "the Welcome")
	wait(t, up, "the new link")
	expectEnd(t, old, "the replaced link")
	if err := expectEnd(t, user, "the replaced link's user"); err == nil {
		t.Error("the replaced link's user read a clean EOF; want an error")
	}
	if r := logs.Find(slog.LevelWarn, "tcpipe: a partner that proved the secret replaces the link before it; the old link's user connections are closed"); len(r) != 1 ||
		r[0].Attrs["old"] != old.LocalAddr().String() || r[0].Attrs["remote"] != partner.LocalAddr().String() {
		t.Errorf("logged %v; want one replacement naming both links", r)
	}
}

// TestSecretHandshakeTimeout checks, in virtual time, that a partner that
// says nothing is dropped after HandshakeTimeout, and a client whose
// server sends no challenge gives up after its own and says why.
func TestSecretHandshakeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 3 * time.Second
		logs, logger := flowtest.NewLogs()
		l := memnet.New("")
		srv := &Server{Secret: testSecret, HandshakeTimeout: timeout, Logger: logger}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()
		c, err := l.DialContext(t.Context(), "tcp", "")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		readAuthMsg(t, c, 1, 32, "the Challenge")
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("read a byte from a server that should have hung up")
		}
		if d := time.Since(start); d != timeout {
			t.Errorf("a silent partner was dropped after %v, want %v", d, timeout)
		}
		synctest.Wait()
		if r := logs.Find(slog.LevelWarn, "tcpipe: partner refused"); len(r) != 1 || !strings.Contains(r[0].Attrs["reason"], "no proof within 3s") {
			t.Errorf("logged %v; want a refusal that says no proof came within 3s", r)
		}
		srv.Close()
		<-done

		// A client with a secret, and a server without: the client says so.
		logs, logger = flowtest.NewLogs()
		l = memnet.New("")
		ctx, cancel := context.WithCancel(t.Context())
		cl := &Client{Server: "partner.test:1", Dial: l.DialContext, Secret: testSecret, HandshakeTimeout: timeout,
			MinBackoff: time.Hour, MaxBackoff: time.Hour, Logger: logger}
		go func() { done <- cl.DialAndServe(ctx) }()
		silent, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Error("the client sent something before the server's challenge")
		}
		if d := time.Since(start); d != timeout {
			t.Errorf("the client gave up after %v, want %v", d, timeout)
		}
		synctest.Wait()
		if r := logs.Find(slog.LevelWarn, "tcpipe: no link to the server instance; dialling again"); len(r) != 1 ||
			!strings.Contains(r[0].Attrs["err"], "the server sent no challenge within 3s: does it hold the secret?") {
			t.Errorf("logged %v; want a warning that the server sent no challenge", r)
		}
		cancel()
		<-done
	})
}

// TestSecretInstances runs a server and a client instance with a secret,
// over TCP and over TLS (the proof then binds to the TLS connection).
func TestSecretInstances(t *testing.T) {
	srvTLS, clTLS := tlsConfigs(t)
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) {
			echo, _ := startEcho(t, "127.0.0.4:0")
			srv := &Server{Ports: []uint16{echo}, Bind: "127.0.0.2", Secret: testSecret}
			srv.init()
			srvUp := make(chan struct{}, 4)
			srv.in.ready = func() { srvUp <- struct{}{} }
			var l net.Listener = listenOn(t, "127.0.0.2:0")
			addr := l.Addr().String()
			if useTLS {
				l = tls.NewListener(l, srvTLS)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(l) }()
			defer func() { srv.Close(); <-done }()

			cl := &Client{Server: addr, Target: "127.0.0.4", Secret: testSecret}
			if useTLS {
				cl.Dial = (&tls.Dialer{Config: clTLS}).DialContext
			}
			startClient(t, cl)
			wait(t, srvUp, "the server's link")
			user := dial(t, hostPort("127.0.0.2", echo))
			if err := echoOnce(user, []byte("through the authenticated link")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSecretMismatch: a client whose secret differs from the server's is
// refused; it logs the server's reason, and no link comes up.
func TestSecretMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srvLogs, srvLogger := flowtest.NewLogs()
		l := memnet.New("")
		srv := &Server{Secret: testSecret, Logger: srvLogger}
		srv.init()
		srv.in.ready = func() { t.Error("the server took a partner with another secret") }
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()

		logs, logger := flowtest.NewLogs()
		ctx, cancel := context.WithCancel(t.Context())
		cl := &Client{Server: "partner.test:1", Dial: l.DialContext, Secret: []byte("not the secret the server holds"),
			MinBackoff: time.Hour, MaxBackoff: time.Hour, Logger: logger}
		cl.in.ready = func() { t.Error("the client took a server with another secret") }
		clDone := make(chan error, 1)
		go func() { clDone <- cl.DialAndServe(ctx) }()
		synctest.Wait()
		if r := logs.Find(slog.LevelWarn, "tcpipe: no link to the server instance; dialling again"); len(r) != 1 ||
			!strings.Contains(r[0].Attrs["err"], "the server refused the proof: wrong proof: the two instances do not hold the same secret") {
			t.Errorf("the client logged %v; want the server's refusal", r)
		}
		if r := srvLogs.Find(slog.LevelWarn, "tcpipe: partner refused"); len(r) != 1 || !strings.Contains(r[0].Attrs["reason"], "wrong proof") {
			t.Errorf("the server logged %v; want the refusal", r)
		}
		cancel()
		<-clDone
		srv.Close()
		<-done
	})
}

// TestShortSecret: a secret under 16 bytes is refused at start.
func TestShortSecret(t *testing.T) {
	srv := &Server{Secret: []byte("short")}
	if err := srv.Serve(listenOn(t, "127.0.0.2:0")); err == nil || !strings.Contains(err.Error(), "the shared secret is 5 bytes; use at least 16") {
		t.Errorf("Serve = %v, want the secret refused", err)
	}
	cl := &Client{Server: "127.0.0.2:1", Secret: []byte("short")}
	if err := cl.DialAndServe(t.Context()); err == nil || !strings.Contains(err.Error(), "the shared secret is 5 bytes") {
		t.Errorf("DialAndServe = %v, want the secret refused", err)
	}
}

// tlsConfigs returns a server's TLS configuration with a self-signed
// certificate for 127.0.0.2, and a client's that trusts it.
func tlsConfigs(t *testing.T) (srv, cl *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.2")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA:                  true,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	cl = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return srv, cl
}
