package main

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
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"rtcp"
	"rtcp/internal/etcdtest"
	"rtcp/internal/flowtest"
)

func TestDPClusterFlagErrors(t *testing.T) {
	const etcd, adv = "http://127.0.0.1:2379", "127.0.0.1:9000"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"etcd without advertise", []string{"-etcd", etcd}, "rtcp dp: -etcd needs -advertise"},
		{"advertise without etcd", []string{"-advertise", adv}, "rtcp dp: -advertise is for a DP of a cluster"},
		{"advertise without host", []string{"-etcd", etcd, "-advertise", ":9000"}, `rtcp dp: -advertise ":9000": want host:port`},
		{"short ttl", []string{"-etcd", etcd, "-advertise", adv, "-etcd-ttl", "10ms"}, "rtcp dp: -etcd-ttl 10ms: want at least 1s"},
		{"etcd user without etcd", []string{"-etcd-user", "rtcp"}, "rtcp dp: -etcd-user is for a DP of a cluster: give -etcd too"},
		{"cluster token without etcd", []string{"-cluster-token-file", "x"}, "rtcp dp: -cluster-token-file is for a DP of a cluster"},
		{"etcd cert without key", []string{"-etcd", etcd, "-advertise", adv, "-etcd-tls-cert", "x.pem"}, "rtcp dp: -etcd-tls-cert and -etcd-tls-key go together"},
		{"etcd user without password", []string{"-etcd", etcd, "-advertise", adv, "-etcd-user", "rtcp"}, "rtcp dp: -etcd-user and -etcd-password-file go together"},
		{"etcd password without user", []string{"-etcd", etcd, "-advertise", adv, "-etcd-password-file", "x"}, "rtcp dp: -etcd-user and -etcd-password-file go together"},
		{"etcd TLS to http", []string{"-etcd", etcd, "-advertise", adv, "-etcd-tls-ca", "ca.pem"}, "rtcp dp: -etcd http://127.0.0.1:2379: the etcd client speaks no TLS to an http:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"dp", "-listen", "127.0.0.1:0"}, tt.args...)
			if code := run(t.Context(), args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.HasPrefix(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to start with %q", stderr.String(), tt.want)
			}
		})
	}
}

// Two DPs on one etcd: a server exposed on both, a client of DP2, and a
// server exposed on DP1 only, reached through DP2.
func TestDPCluster(t *testing.T) {
	etcd := etcdtest.Start(t)
	a1, a2 := closedPort(t), closedPort(t)
	for _, a := range []string{a1, a2} {
		mustLaunch(t, runDP, "-listen", a, "-etcd", etcd.Endpoint, "-advertise", a, "-etcd-ttl", "2s")
	}
	echo := startEcho(t)
	mustLaunch(t, runExpose, "-dp", a1+","+a2, "-name", "both", "-to", echo, "-transport", "yamux")
	mustLaunch(t, runExpose, "-dp", a1, "-name", "one", "-to", echo)
	for _, name := range []string{"both", "one"} {
		conn := mustLaunch(t, runConnect, "-dp", a2, "-name", name, "-listen", "127.0.0.1:0", "-transport", "yamux")
		if err := exchange(conn.addr, bytes.Repeat([]byte("cluster "), 1000)); err != nil {
			t.Errorf("%s through DP2: %v", name, err)
		}
	}
}

// The etcd flags become the registry's Config: TLS for https:// URLs or
// with -etcd-tls-*, and the user and password of the file.
func TestDPClusterEtcdConfig(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeEtcdPKI(t, dir)
	pw := writeFile(t, dir, "etcd.password", "s3cret\n")
	tests := []struct {
		name                     string
		args                     []string
		tls, clientCert, rootCAs bool
		user, password           string
		warn                     string
	}{
		{name: "http", args: []string{"-etcd", "http://127.0.0.1:2379"}},
		{name: "https, system CAs", args: []string{"-etcd", "https://127.0.0.1:2379"}, tls: true},
		{name: "https, all flags", args: []string{"-etcd", "https://127.0.0.1:2379", "-etcd-tls-ca", ca, "-etcd-tls-cert", cert, "-etcd-tls-key", key, "-etcd-user", "rtcp", "-etcd-password-file", pw},
			tls: true, clientCert: true, rootCAs: true, user: "rtcp", password: "s3cret"},
		{name: "password over http", args: []string{"-etcd", "http://127.0.0.1:2379", "-etcd-user", "rtcp", "-etcd-password-file", pw},
			user: "rtcp", password: "s3cret", warn: "the password crosses the network in the clear"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("dp", "", "")
			f := addClusterFlags(fs)
			if err := fs.Parse(append(tt.args, "-advertise", "127.0.0.1:9000")); err != nil {
				t.Fatal(err)
			}
			if err := f.check(fs); err != nil {
				t.Fatal(err)
			}
			logs, log := flowtest.NewLogs()
			cfg, err := f.etcdConfig(log)
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.TLS != nil) != tt.tls {
				t.Fatalf("TLS = %v, want TLS %v", cfg.TLS, tt.tls)
			}
			if cfg.TLS != nil {
				if got := len(cfg.TLS.Certificates) == 1; got != tt.clientCert {
					t.Errorf("client certificate: %v, want %v", got, tt.clientCert)
				}
				if got := cfg.TLS.RootCAs != nil; got != tt.rootCAs {
					t.Errorf("RootCAs set: %v, want %v", got, tt.rootCAs)
				}
			}
			if cfg.Username != tt.user || cfg.Password != tt.password {
				t.Errorf("user %q, password %q; want %q, %q", cfg.Username, cfg.Password, tt.user, tt.password)
			}
			if warned := logs.AtLeast(slog.LevelWarn); len(warned) != 0 != (tt.warn != "") {
				t.Errorf("warnings %v, want one that says %q", warned, tt.warn)
			}
		})
	}
}

// Two DPs on an etcd that speaks only TLS, asks for client certificates
// and a user: with -etcd-tls-* and -etcd-user they form a cluster; with a
// wrong password a DP does not start.
func TestDPClusterSecureEtcd(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeEtcdPKI(t, dir)
	endpoint := startSecureEtcd(t, dir, ca, cert, key)
	good := writeFile(t, dir, "good.password", "rtcp-pw\n")
	bad := writeFile(t, dir, "bad.password", "not-the-password\n")
	etcdFlags := func(pw string) []string {
		return []string{"-etcd", endpoint, "-etcd-tls-ca", ca, "-etcd-tls-cert", cert, "-etcd-tls-key", key,
			"-etcd-user", "rtcp", "-etcd-password-file", pw, "-etcd-ttl", "2s"}
	}
	a1, a2 := closedPort(t), closedPort(t)
	for _, a := range []string{a1, a2} {
		mustLaunch(t, runDP, append([]string{"-listen", a, "-advertise", a}, etcdFlags(good)...)...)
	}
	echo := startEcho(t)
	mustLaunch(t, runExpose, "-dp", a1, "-name", "one", "-to", echo)
	conn := mustLaunch(t, runConnect, "-dp", a2, "-name", "one", "-listen", "127.0.0.1:0", "-transport", "yamux")
	if err := exchange(conn.addr, bytes.Repeat([]byte("secure etcd "), 1000)); err != nil {
		t.Errorf("through DP2: %v", err)
	}

	a3 := closedPort(t)
	_, err := launch(t, runDP, append([]string{"-listen", a3, "-advertise", a3}, etcdFlags(bad)...)...)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("a DP with a wrong etcd password: %v, want etcd's refusal", err)
	}
}

// With -cluster-token-file, a DP that carries a client speaks for it: a
// name whose rule takes only bob's key is reached by bob through the
// other DP. Without it, the DPs prove -token-file's key, and bob is
// checked as that key.
func TestDPClusterToken(t *testing.T) {
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "dp.json", `{
	"keys": {
		"alice": "0123456789abcdef0123456789abcdef",
		"bob": "fedcba9876543210fedcba9876543210"
	},
	"names": [{"name": "svc-*", "owners": ["alice"], "clients": ["bob"]}]
}`)
	dpToken := writeFile(t, dir, "dp.token", "dps:00112233445566778899aabbccddeeff\n")
	clusterToken := writeFile(t, dir, "cluster.token", "cluster:ffeeddccbbaa99887766554433221100\n")
	aliceFile := writeFile(t, dir, "alice.token", aliceToken+"\n")
	bobFile := writeFile(t, dir, "bob.token", bobToken+"\n")
	t.Setenv(tokenEnv, "")
	echo := startEcho(t)
	for _, tc := range []struct {
		name    string
		cluster []string
		ok      bool
	}{
		{"with -cluster-token-file", []string{"-cluster-token-file", clusterToken}, true},
		{"without", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a1, a2 := closedPort(t), closedPort(t)
			for _, a := range []string{a1, a2} {
				args := []string{"-listen", a, "-etcd", etcd.Endpoint, "-advertise", a, "-etcd-ttl", "2s", "-config", cfg, "-token-file", dpToken}
				mustLaunch(t, runDP, append(args, tc.cluster...)...)
			}
			name := "svc-" + strings.ReplaceAll(tc.name, " ", "")
			mustLaunch(t, runExpose, "-dp", a1, "-name", name, "-to", echo, "-token-file", aliceFile)
			conn := mustLaunch(t, runConnect, "-dp", a2, "-name", name, "-listen", "127.0.0.1:0", "-transport", "yamux", "-token-file", bobFile)
			err := exchange(conn.addr, []byte("carried for bob"))
			if tc.ok && err != nil {
				t.Errorf("bob through DP2: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(conn.out.String(), `key \"dps\" may not open sessions`)) {
				t.Errorf("bob through DP2 without -cluster-token-file: %v, want a refusal of the DPs' key; connect said:\n%s", err, conn.out)
			}
		})
	}
}

func TestWithClusterKey(t *testing.T) {
	c := &rtcp.Credential{Key: "cluster", Secret: []byte("ffeeddccbbaa99887766554433221100")}
	if p, err := withClusterKey(nil, c); p != nil || err != nil {
		t.Errorf("no policy: %v, %v; want none", p, err)
	}
	pol := &rtcp.Policy{Keys: map[string][]byte{"alice": []byte("0123456789abcdef0123456789abcdef")}}
	p, err := withClusterKey(pol, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Keys["cluster"]) != string(c.Secret) || len(p.DPs) != 1 || p.DPs[0] != "cluster" {
		t.Errorf("policy %+v does not know the cluster's key as a DP's", p)
	}
	if _, ok := pol.Keys["cluster"]; ok || pol.DPs != nil {
		t.Error("withClusterKey changed the policy it was given")
	}
	pol.Keys["cluster"] = []byte("another-secret-0123456789abcdef0")
	if _, err := withClusterKey(pol, c); err == nil || !strings.Contains(err.Error(), "one secret in -config and another") {
		t.Errorf("a key with two secrets: %v", err)
	}
	f := &clusterFlags{tokenFile: new(string)}
	*f.tokenFile = writeFile(t, t.TempDir(), "cluster.token", aliceToken)
	if _, err := f.clusterCredential(&rtcp.Credential{Key: "alice"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "give the DPs a key of their own") {
		t.Errorf("the cluster's key is -token-file's: %v", err)
	}
}

// writeEtcdPKI writes a test CA and a certificate it signed for
// 127.0.0.1 that serves and authenticates clients both, for etcd and its
// clients, and returns the paths of the CA, the certificate and its key.
func writeEtcdPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd test CA"},
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
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "rtcp-dp"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
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
	return writeFile(t, dir, "etcd-ca.pem", enc("CERTIFICATE", caDER)),
		writeFile(t, dir, "etcd.pem", enc("CERTIFICATE", der)),
		writeFile(t, dir, "etcd.key", enc("EC PRIVATE KEY", kb))
}

// startSecureEtcd runs an etcd that speaks only TLS on its client port,
// requires a client certificate that ca signed, and has authentication
// on, with the user rtcp (password rtcp-pw) allowed the registry's
// prefix; it returns its client URL. The test is skipped without an
// etcd binary.
func startSecureEtcd(t *testing.T, dir, ca, cert, key string) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd binary on PATH: install the etcd-server package (apt-get install etcd-server) to run the cluster tests; .ci/run does")
	}
	client, peer := closedPort(t), closedPort(t)
	cmd := exec.Command(bin, "--name", "rtcp-secure", "--data-dir", dir+"/etcd",
		"--listen-client-urls", "https://"+client, "--advertise-client-urls", "https://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "rtcp-secure=http://"+peer,
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
		"--logger=zap", "--log-outputs=stderr")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logDone := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		signalled := false
		for sc.Scan() {
			if line := sc.Text(); !signalled && (strings.Contains(line, "ready to serve client requests") || strings.Contains(line, "serving client traffic")) {
				close(ready)
				signalled = true
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-logDone
		cmd.Wait()
	})
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-ready:
	case <-logDone:
		t.Fatal("etcd exited before it was ready")
	case <-timeout.C:
		t.Fatal("etcd was not ready within 30 s")
	}

	endpoint := "https://" + client
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := loadPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint},
		TLS:       &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots},
		Logger:    zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const prefix = "/rtcp/names/"
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "rtcp"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "rtcp", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "rtcp", "rtcp-pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "rtcp", "rtcp"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setting up etcd's users: %v", err)
		}
	}
	return endpoint
}

// loadPool reads a PEM file of CAs.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, errors.New("no certificate in " + path)
	}
	return p, nil
}
