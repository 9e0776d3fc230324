package rtcp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// selfSigned returns a self-signed certificate for host, and adds it to
// pool.
func selfSigned(t testing.TB, host string, pool *x509.CertPool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{host},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// serveSNIDoor runs dp's SNI door for domain on a loopback port until the
// test ends.
func serveSNIDoor(t *testing.T, dp *DiscoverPoint, domain string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.ServeSNI(l, domain) }()
	t.Cleanup(func() {
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("ServeSNI returned %v, want ErrDiscoverPointClosed", err)
		}
	})
	return l.Addr().String()
}

// TestSNIDoor reaches two servers through one SNI port, each with the
// certificate of its own name: the DP passes TLS through untouched.
func TestSNIDoor(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	pool := x509.NewCertPool()
	var mu sync.Mutex            // guards clients
	clients := map[string]bool{} // the local addresses of the client's connections
	for _, name := range []string{"alpha", "beta"} {
		cert := selfSigned(t, name+".dp.test", pool)
		l := tls.NewListener(listen(t, nil, addr, name), &tls.Config{Certificates: []tls.Certificate{cert}})
		serveBackend(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The server's Conn has the client's address.
			mu.Lock()
			ok := clients[r.RemoteAddr]
			mu.Unlock()
			if !ok {
				t.Errorf("%s: request from %q, not the client's address", name, r.RemoteAddr)
			}
			whoAmI(name).ServeHTTP(w, r)
		}))
	}
	door := serveSNIDoor(t, dp, "dp.test")
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, network, door)
			if err == nil {
				mu.Lock()
				clients[c.LocalAddr().String()] = true
				mu.Unlock()
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	for _, name := range []string{"alpha", "beta", "alpha"} {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + name + ".dp.test/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := name + "|" + name + ".dp.test|||"; string(body) != want {
			t.Errorf("%s: %q, want %q", name, body, want)
		}
		if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != name+".dp.test" {
			t.Errorf("%s: certificate of %q", name, got)
		}
	}
	if st := dp.Stats(); st.SessionsTotal != 2 {
		t.Errorf("Stats.SessionsTotal = %d, want 2 (one kept-alive connection to each)", st.SessionsTotal)
	}
}

// alertConn records what its peer sends.
type alertConn struct {
	net.Conn
	got bytes.Buffer
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.got.Write(p[:n])
	return n, err
}

// TestSNIDoorRefusals: a hello the door cannot route gets a TLS alert
// that says why, and bytes that are not TLS a plain close.
func TestSNIDoorRefusals(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
		AnonymousServers: true, AnonymousClients: true,
		Names: []NameRule{{Name: "walled", Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	}}
	addr := startDP(t, dp)
	pool := x509.NewCertPool()
	cert := selfSigned(t, "walled.dp.test", pool)
	serveBackend(t, tls.NewListener(listen(t, nil, addr, "walled"), &tls.Config{Certificates: []tls.Certificate{cert}}), whoAmI("walled"))
	door := serveSNIDoor(t, dp, "dp.test")

	for _, tc := range []struct {
		serverName string
		alert      byte
	}{
		{"", alertUnrecognizedName}, // no SNI
		{"alpha.example.com", alertUnrecognizedName},
		{"a.b.dp.test", alertUnrecognizedName},
		{"nobody.dp.test", alertUnrecognizedName},
		{"walled.dp.test", alertAccessDenied},
	} {
		t.Run(tc.serverName, func(t *testing.T) {
			c, err := net.Dial("tcp", door)
			if err != nil {
				t.Fatal(err)
			}
			ac := &alertConn{Conn: c}
			tc2 := tls.Client(ac, &tls.Config{ServerName: tc.serverName, RootCAs: pool, InsecureSkipVerify: tc.serverName == ""})
			defer tc2.Close()
			tc2.SetDeadline(time.Now().Add(time.Minute))
			if err := tc2.Handshake(); err == nil {
				t.Fatal("handshake succeeded")
			}
			want := []byte{recordTypeAlert, 3, 3, 0, 2, 2, tc.alert}
			if !bytes.Equal(ac.got.Bytes(), want) {
				t.Errorf("got % x from the door, want the alert % x", ac.got.Bytes(), want)
			}
		})
	}

	t.Run("not TLS", func(t *testing.T) {
		c, err := net.Dial("tcp", door)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: walled.dp.test\r\n\r\n")
		if got, err := io.ReadAll(c); len(got) != 0 {
			t.Errorf("got %q, %v; want the connection closed", got, err)
		}
	})
}

// captureHello returns the ClientHello that a crypto/tls client with cfg
// sends.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		tls.Client(a, cfg).Handshake() // fails when b closes
		a.Close()
	})
	defer wg.Wait()
	defer b.Close()
	raw, host, err := readClientHello(b, maxClientHello)
	if err != nil {
		t.Fatal(err)
	}
	if want := cfg.ServerName; net.ParseIP(want) != nil && host != "" || net.ParseIP(want) == nil && host != want {
		t.Fatalf("read server name %q from the hello, want %q", host, want)
	}
	return raw
}

// helloConfigs are clients whose hellos seed the fuzzer.
var helloConfigs = []*tls.Config{
	{ServerName: "printer-7.dp.example.com"},
	{ServerName: "a.dp.test", MaxVersion: tls.VersionTLS12},
	{ServerName: "Mixed-Case.DP.test", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13},
	{ServerName: "127.0.0.1"}, // an IP address: no SNI
	{InsecureSkipVerify: true},
	{ServerName: "x.dp.test", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}},
}

func TestReadClientHello(t *testing.T) {
	for _, cfg := range helloConfigs {
		raw := captureHello(t, cfg)
		// The same hello split over records of 100 bytes.
		var split []byte
		body := raw[5:]
		for len(body) > 0 {
			n := min(len(body), 100)
			split = append(split, recordTypeHandshake, 3, 1, 0, byte(n))
			split = append(split, body[:n]...)
			body = body[n:]
		}
		for _, hello := range [][]byte{raw, split} {
			got, host, err := readClientHello(bytes.NewReader(append(hello, "after"...)), maxClientHello)
			if err != nil || !bytes.Equal(got, hello) || host != helloHost(cfg) {
				t.Errorf("%s: readClientHello read %d bytes (hello: %d) and %q, %v", cfg.ServerName, len(got), len(hello), host, err)
			}
			if _, _, err := readClientHello(bytes.NewReader(hello), len(hello)-1); err == nil {
				t.Errorf("%s: a hello over the bound was read", cfg.ServerName)
			}
		}
	}
}

// helloHost is the server name a client with cfg puts in its hello.
func helloHost(cfg *tls.Config) string {
	if net.ParseIP(cfg.ServerName) != nil {
		return ""
	}
	return cfg.ServerName
}

// helloConn feeds a ClientHello to a crypto/tls server and throws away
// what it answers.
type helloConn struct {
	net.Conn // nil: only Read, Write, Close and the deadlines are called
	r        io.Reader
}

func (c *helloConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *helloConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

var errStop = errors.New("stop")

// FuzzClientHello checks that no bytes make readClientHello panic, and
// that where crypto/tls finds a server name in a hello that fits the
// bound, readClientHello finds the same.
func FuzzClientHello(f *testing.F) {
	for _, cfg := range helloConfigs {
		f.Add(captureHello(f, cfg))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, host, err := readClientHello(bytes.NewReader(data), maxClientHello)
		if !bytes.HasPrefix(data, raw) {
			t.Fatalf("returned %d bytes that are not the input's first", len(raw))
		}
		if err == nil && host != "" && !hostName([]byte(host)) {
			t.Fatalf("returned server name %q, not a host name", host)
		}
		theirs, seen := "", false
		tls.Server(&helloConn{r: bytes.NewReader(data)}, &tls.Config{
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				theirs, seen = h.ServerName, true
				return nil, errStop
			},
		}).Handshake()
		if !seen || len(data) > maxClientHello {
			return
		}
		if theirs != "" && !hostName([]byte(theirs)) {
			return // not a name the door could route
		}
		if err != nil || host != theirs {
			t.Fatalf("crypto/tls read server name %q; readClientHello %q, %v", theirs, host, err)
		}
	})
}
