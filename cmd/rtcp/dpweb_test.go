package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"rtcp"
)

// TestDPWebDoors reaches a server by host name through -http, and one
// that terminates TLS by server name through -https.
func TestDPWebDoors(t *testing.T) {
	p := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-https", "127.0.0.1:0", "-domain", "dp.test")
	httpAddr := logRe("rtcp dp: web door", "addr").FindStringSubmatch(p.out.String())
	httpsAddr := logRe("rtcp dp: TLS door", "addr").FindStringSubmatch(p.out.String())
	if httpAddr == nil || httpsAddr == nil {
		t.Fatalf("no -http or -https address on stderr:\n%s", p.out)
	}
	hello := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s for %s", name, r.Host)
		})
	}
	for _, s := range []struct {
		name string
		tls  *tls.Config
	}{{"plain", nil}, {"secure", &tls.Config{Certificates: []tls.Certificate{selfSignedCert(t, "secure.dp.test")}}}} {
		l, err := rtcp.Listen(p.addr, s.name)
		if err != nil {
			t.Fatal(err)
		}
		if s.tls != nil {
			l = tls.NewListener(l, s.tls)
		}
		srv := &http.Server{Handler: hello(s.name)}
		go srv.Serve(l)
		defer srv.Close()
	}

	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the certificate is checked below
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			to := httpAddr[1]
			if strings.HasSuffix(addr, ":443") {
				to = httpsAddr[1]
			}
			return new(net.Dialer).DialContext(ctx, network, to)
		},
	}
	defer tr.CloseIdleConnections()
	for _, url := range []string{"http://plain.dp.test/", "https://secure.dp.test/"} {
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		host := strings.Split(url, "/")[2]
		if want := strings.Split(host, ".")[0] + " for " + host; string(body) != want {
			t.Errorf("%s: %q, want %q", url, body, want)
		}
		if resp.TLS != nil && resp.TLS.PeerCertificates[0].Subject.CommonName != host {
			t.Errorf("%s: the certificate of %q", url, resp.TLS.PeerCertificates[0].Subject.CommonName)
		}
	}
}

// TestDPWebShutdown: the -http door's idle connections to servers are
// sessions, which the DP's graceful shutdown must not wait out its grace
// period for.
func TestDPWebShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newOutput()
	done := make(chan error, 1)
	go func() {
		done <- runDP(ctx, []string{"-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-domain", "dp.test", "-grace", "10m"}, io.Discard, out)
	}()
	var dpAddr string
	select {
	case dpAddr = <-out.ready:
	case err := <-done:
		t.Fatalf("dp ended before it was ready: %v\n%s", err, out)
	}
	httpAddr := logRe("rtcp dp: web door", "addr").FindStringSubmatch(out.String())
	l, err := rtcp.Listen(dpAddr, "idle")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	defer func() { srv.Close(); <-served }()

	req, _ := http.NewRequest("GET", "http://"+httpAddr[1]+"/", nil)
	req.Host = "idle.dp.test"
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the door's connection to the server is idle now, kept alive

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // under the 60 s after which the door drops an idle connection
		t.Fatalf("dp still shutting down after 30s: it waits for the door's idle session\n%s", out)
	}
}

func TestDPWebUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-http", "127.0.0.1:0"}, "rtcp dp: -http and -https need -domain"},
		{[]string{"-https", "127.0.0.1:0"}, "rtcp dp: -http and -https need -domain"},
		{[]string{"-domain", "dp.test"}, "rtcp dp: -domain dp.test serves nothing without -http or -https"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), append([]string{"dp", "-listen", "127.0.0.1:0"}, tt.args...), &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

// selfSignedCert returns a self-signed certificate for host.
func selfSignedCert(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{host},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
