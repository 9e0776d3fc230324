package rtcp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// mtlsPKI is a CA with a server certificate for loopback and a client
// certificate, for a DP that asks for client certificates.
type mtlsPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newMTLSPKI(t *testing.T) *mtlsPKI {
	t.Helper()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mtls test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &mtlsPKI{pool: pool, server: leaf(2, x509.ExtKeyUsageServerAuth), client: leaf(3, x509.ExtKeyUsageClientAuth)}
}

// TestServeConnTLS: a connection handed to ServeConn (a WebSocket of
// package wsconn, here a pipe) meets the DP's TLS and its demand for a
// client certificate, as one that Serve accepts does.
func TestServeConnTLS(t *testing.T) {
	pki := newMTLSPKI(t)
	dp := &DiscoverPoint{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.server},
		ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert}}
	var wg sync.WaitGroup
	defer func() {
		dp.Close()
		wg.Wait()
	}()
	// Loopback TCP rather than a pipe: a pipe's writes wait for the reader,
	// and a plain client's Aloha and the DP's TLS alert would wait for each
	// other until the handshake timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	viaServeConn := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", l.Addr().String())
		if err != nil {
			return nil, err
		}
		s, err := l.Accept()
		if err != nil {
			c.Close()
			return nil, err
		}
		wg.Go(func() { dp.ServeConn(s) })
		return c, nil
	}
	for _, c := range []struct {
		name string
		tls  *tls.Config
		in   bool // the DP answers the Connect
	}{
		{"no TLS", nil, false},
		{"TLS without a client certificate", &tls.Config{RootCAs: pki.pool}, false},
		{"TLS with a client certificate", &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Dialer{Dial: viaServeConn, TLSConfig: c.tls}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only a hang ends here
			defer cancel()
			_, err := d.DialContext(ctx, "127.0.0.1:9000", "nobody")
			if answered := errors.Is(err, ErrNoServer) || errors.Is(err, ErrRefused); answered != c.in {
				t.Errorf("dial: %v; want the DP to answer: %v", err, c.in)
			}
		})
	}
}
