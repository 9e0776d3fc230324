package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"rtcp"
	"rtcp/internal/flowtest"
)

const (
	aliceToken = "alice:0123456789abcdef0123456789abcdef"
	bobToken   = "bob:fedcba9876543210fedcba9876543210"
)

// writeFile writes a file of mode 0600 in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writePKI writes a test CA and a certificate it signed for 127.0.0.1,
// good for a server and a client, and returns the paths of the CA, the
// certificate and its key.
func writePKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rtcp test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "dp"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	return writeFile(t, dir, "ca.pem", enc("CERTIFICATE", caDER)),
		writeFile(t, dir, "dp.pem", enc("CERTIFICATE", der)),
		writeFile(t, dir, "dp.key", enc("EC PRIVATE KEY", kb))
}

const testConfig = `{
	"keys": {
		"alice": "0123456789abcdef0123456789abcdef",
		"bob": "fedcba9876543210fedcba9876543210"
	},
	"names": [
		{"name": "pi-*", "owners": ["alice"], "clients": ["bob"], "allow": ["127.0.0.0/8", "::1"]}
	]
}`

func TestSecureDP(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writePKI(t, dir)
	cfg := writeFile(t, dir, "dp.json", testConfig)
	aliceFile := writeFile(t, dir, "alice.token", aliceToken+"\n")
	t.Setenv(tokenEnv, "")

	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", key, "-config", cfg, "-log-format", "json")
	if logged(t, dp, "WARN", "") {
		t.Errorf("warnings from a DP with a config:\n%s", dp.out)
	}
	// No token: refused, and told why.
	_, err := launch(t, runExpose, "-dp", dp.addr, "-name", "pi-7", "-to", startEcho(t), "-tls-ca", ca)
	if err == nil || !strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), "key") {
		t.Fatalf("expose without a token: %v", err)
	}
	// No TLS: refused.
	if _, err := launch(t, runExpose, "-dp", dp.addr, "-name", "pi-7", "-to", startEcho(t), "-token-file", aliceFile); err == nil {
		t.Fatal("expose without TLS got through a TLS DP")
	}
	mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "pi-7", "-to", startEcho(t), "-tls-ca", ca, "-token-file", aliceFile)

	t.Setenv(tokenEnv, bobToken)
	conn := mustLaunch(t, runConnect, "-dp", dp.addr, "-name", "pi-7", "-listen", "127.0.0.1:0", "-tls-ca", ca)
	if err := exchange(conn.addr, bytes.Repeat([]byte("secure "), 10000)); err != nil {
		t.Fatal(err)
	}
	// bob may connect but not own: the name is alice's.
	_, err = launch(t, runExpose, "-dp", dp.addr, "-name", "pi-8", "-to", startEcho(t), "-tls-ca", ca)
	if err == nil || !strings.Contains(err.Error(), "belongs to another key") {
		t.Fatalf("expose of alice's name with bob's token: %v", err)
	}
}

// TestWebSocketDoorTLS: on a DP with -tls-ca, the /rtcp door of
// -c8y-listen asks for TLS and a client certificate as -listen does, and
// says so.
func TestWebSocketDoorTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writePKI(t, dir)
	t.Setenv(tokenEnv, "")
	stderr := startSeedDP(t, "-tls-cert", cert, "-tls-key", key, "-tls-ca", ca, "-c8y-listen", "127.0.0.1:0")
	web := stderr.wait(t, logRe("rtcp dp: remote access and rtcp over WebSocket", "addr"))
	stderr.wait(t, regexp.MustCompile(`msg="rtcp dp: /rtcp (asks for the TLS of -listen)`))
	dp := "ws://" + web
	if _, err := launch(t, runExpose, "-dp", dp, "-name", "pi-7", "-to", startEcho(t), "-log-level", "error"); err == nil {
		t.Fatal("expose without TLS over ws:// got through a DP with -tls-ca")
	}
	if _, err := launch(t, runExpose, "-dp", dp, "-name", "pi-7", "-to", startEcho(t), "-tls-ca", ca, "-log-level", "error"); err == nil {
		t.Fatal("expose without a client certificate over ws:// got through a DP with -tls-ca")
	}
	mine := []string{"-tls-ca", ca, "-tls-cert", cert, "-tls-key", key, "-log-level", "error"}
	mustLaunch(t, runExpose, append([]string{"-dp", dp, "-name", "pi-7", "-to", startEcho(t)}, mine...)...)
	conn := mustLaunch(t, runConnect, append([]string{"-dp", dp, "-name", "pi-7", "-listen", "127.0.0.1:0"}, mine...)...)
	if err := exchange(conn.addr, bytes.Repeat([]byte("wss "), 10000)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDPWarns(t *testing.T) {
	t.Setenv(tokenEnv, "")
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0")
	if !strings.Contains(dp.out.String(), `level=WARN msg="rtcp dp: no -config`) {
		t.Errorf("an open DP does not say so:\n%s", dp.out)
	}
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	s := securityFlags(fs, false)
	if err := fs.Parse([]string{"-tls-insecure-skip-verify"}); err != nil {
		t.Fatal(err)
	}
	logs, log := flowtest.NewLogs()
	cfg, err := s.tlsConfig(fs, log)
	if err != nil || cfg == nil || !cfg.InsecureSkipVerify {
		t.Fatalf("tlsConfig = %+v, %v", cfg, err)
	}
	if w := logs.AtLeast(slog.LevelWarn); len(w) != 1 {
		t.Errorf("warnings %v, want one", w)
	}
}

func TestSecurityFlagErrors(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.token")
	os.WriteFile(shared, []byte(aliceToken), 0o644)
	for _, tc := range []struct {
		dp   bool
		args []string
		env  string
		says string
	}{
		{true, []string{"-tls-cert", "x.pem"}, "", "go together"},
		{true, []string{"-tls-ca", "x.pem"}, "", "no such file"},
		{false, []string{"-token-file", filepath.Join(dir, "none")}, "", "no such file"},
		{false, nil, "alice", "KEY:SECRET"},
		{false, nil, "alice:short", "at least 16"},
		{true, []string{"-config", writeFile(t, dir, "bad.json", `{"keys":{},"names":[{"name":"x","owner":["a"]}]}`)}, "", `unknown field "owner"`},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		s := securityFlags(fs, tc.dp)
		s.getenv = func(string) string { return tc.env }
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		discard := slog.New(slog.DiscardHandler)
		_, err := s.tlsConfig(fs, discard)
		if err == nil {
			if tc.dp {
				_, err = s.policy(discard)
			} else {
				_, err = s.peerCredential(discard)
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v env %q: %v, want an error saying %q", tc.args, tc.env, err, tc.says)
		}
	}
	// A token file others can read works, with a warning.
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	s := securityFlags(fs, false)
	fs.Parse([]string{"-token-file", shared})
	logs, log := flowtest.NewLogs()
	if c, err := s.peerCredential(log); err != nil || c.Key != "alice" {
		t.Fatalf("credential = %v, %v", c, err)
	}
	if w := logs.AtLeast(slog.LevelWarn); len(w) != 1 || w[0].Attrs["file"] != shared || w[0].Attrs["mode"] != "-rw-r--r--" {
		t.Errorf("warnings for a shared token file: %v, want one that names it and its mode", w)
	}
}

func TestParseConfig(t *testing.T) {
	pol, err := parseConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Keys) != 2 || len(pol.Names) != 1 || len(pol.Names[0].Allow) != 2 || pol.Names[0].Allow[1].String() != "::1/128" {
		t.Fatalf("parsed %+v", pol)
	}
	for _, bad := range []struct{ in, says string }{
		{`{"keys":{"a":"short"}}`, "at least 16"},
		{`{"names":[{"name":"x","owners":["nobody"]}]}`, `names key "nobody"`},
		{`{"names":[{"name":"x","allow":["10.0.0.0/33"]}]}`, "neither a CIDR nor an address"},
		{`{"names":[{"name":"[x"}]}`, "bad pattern"},
		{`{} {}`, "more than one"},
		{`[]`, "cannot unmarshal"},
		{`{"names":[{"name":"x","limits":{"max_sessions":-1}}]}`, "limits"},
		{`{"names":[{"name":"x","limits":{"bytes_per_sec":1}}]}`, "unknown field"},
		{`{"key_limits":{"nobody":{"max_sessions":1}}}`, `key "nobody"`},
	} {
		if _, err := parseConfig([]byte(bad.in)); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("parseConfig(%s) = %v, want an error saying %q", bad.in, err, bad.says)
		}
	}
}

// TestParseConfigLimits checks the limits of names and keys in -config.
func TestParseConfigLimits(t *testing.T) {
	pol, err := parseConfig([]byte(`{"keys":{"bob":"0123456789abcdef0123"},
		"names":[{"name":"web-*","limits":{"bytes_per_second":1000000,"sessions_per_second":5.5,"max_sessions":10}}],
		"key_limits":{"bob":{"max_sessions":3}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pol.Names[0].Limits, (rtcp.Limits{BytesPerSecond: 1000000, SessionsPerSecond: 5.5, MaxSessions: 10}); got != want {
		t.Errorf("name limits %+v, want %+v", got, want)
	}
	if got := pol.KeyLimits["bob"]; got != (rtcp.Limits{MaxSessions: 3}) {
		t.Errorf("key limits %+v", got)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(testConfig))
	f.Add([]byte(`{"anonymous_clients":true,"names":[{"name":"*","allow":["10.1.2.3"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pol, err := parseConfig(b)
		if err == nil {
			if err := pol.Validate(); err != nil {
				t.Fatalf("parseConfig accepted a policy that does not validate: %v", err)
			}
		}
	})
}
