package main

import (
	"flag"
	"net"
	"net/url"
	"rtcp/internal/flowtest"
	"strings"
	"testing"

	"rtcp"
)

// TestDPErrors checks that each way of failing to reach a DP, or of
// giving a flag a bad value, is one line that says what to do.
func TestDPErrors(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writePKI(t, dir)
	t.Setenv(tokenEnv, "")
	plain := mustLaunch(t, runDP, "-listen", "127.0.0.1:0").addr
	secure := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", key).addr
	l, err := rtcp.Listen(plain, "taken")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	keyed := mustLaunch(t, runDP, "-listen", "127.0.0.1:0",
		"-config", writeFile(t, dir, "keys.json", `{"keys":{"alice":"0123456789abcdef0123456789abcdef"}}`)).addr
	redis := flowtest.Greeter(t, "-ERR unknown command\r\n")
	sshd := flowtest.Greeter(t, "SSH-2.0-OpenSSH_9\r\n")
	to := closedPort(t) // expose fails before it dials -to

	tests := []struct {
		name string
		args []string
		code int
		want string // the line on stderr, exactly
	}{
		{"taken name", []string{"expose", "-dp", plain, "-name", "taken", "-to", to}, 1,
			`rtcp expose: DP ` + plain + ` refused name "taken": already served by another server; choose another -name, or stop the other server`},
		{"no server", []string{"connect", "-stdio", "-dp", plain, "-name", "ghost"}, exitRefused,
			`rtcp connect: DP ` + plain + ` refused the session to "ghost": no server named "ghost" is registered at this DP`},
		{"plain to a TLS DP", []string{"expose", "-dp", secure, "-name", "x", "-to", to}, 1,
			"rtcp expose: DP " + secure + " closed the connection during the handshake: it may require TLS (-tls, or -tls-ca FILE for a private CA)"},
		{"connect plain to a TLS DP", []string{"connect", "-stdio", "-dp", secure, "-name", "x"}, exitUnreachable,
			"rtcp connect: DP " + secure + " closed the connection during the handshake: it may require TLS (-tls, or -tls-ca FILE for a private CA)"},
		{"TLS to a plain DP", []string{"expose", "-dp", plain, "-name", "x", "-to", to, "-tls-ca", ca}, 1,
			"rtcp expose: DP " + plain + " does not speak TLS (it answered in plain text): leave out -tls and the other -tls flags"},
		{"untrusted certificate", []string{"connect", "-stdio", "-dp", secure, "-name", "x", "-tls"}, exitUnreachable,
			"rtcp connect: the certificate of DP " + secure + " is signed by a CA this side does not trust: give that CA with -tls-ca FILE"},
		{"no key", []string{"expose", "-dp", keyed, "-name", "x", "-to", to}, 1,
			`rtcp expose: DP ` + keyed + ` refused name "x": unauthorized: it admits only peers with a key, and this side gave none: give one with -token-file FILE (or $RTCP_TOKEN)`},
		{"connect without a key", []string{"connect", "-stdio", "-dp", keyed, "-name", "x"}, exitRefused,
			`rtcp connect: DP ` + keyed + ` refused the session to "x": unauthorized: it admits only peers with a key, and this side gave none: give one with -token-file FILE (or $RTCP_TOKEN)`},
		{"fail fast", []string{"expose", "-dp", to, "-name", "x", "-to", to, "-fail-fast"}, 1,
			"rtcp expose: cannot reach DP " + to + ": connect: connection refused"},
		{"redis", []string{"expose", "-dp", redis, "-name", "x", "-to", to}, 1,
			"rtcp expose: " + redis + " does not speak rtcp: give -dp the address of an rtcp DP"},
		{"sshd", []string{"expose", "-dp", sshd, "-name", "x", "-to", to}, 1,
			"rtcp expose: " + sshd + " does not speak rtcp: give -dp the address of an rtcp DP"},
		{"connect to sshd", []string{"connect", "-stdio", "-dp", sshd, "-name", "x"}, exitUnreachable,
			"rtcp connect: " + sshd + " does not speak rtcp: give -dp the address of an rtcp DP"},
		{"unreachable", []string{"connect", "-stdio", "-dp", to, "-name", "x"}, exitUnreachable,
			"rtcp connect: cannot reach DP " + to + ": connect: connection refused"},
		{"to without port", []string{"expose", "-dp", plain, "-name", "x", "-to", "nowhere"}, 2,
			`rtcp expose: -to "nowhere": want host:port, such as 127.0.0.1:22 (run 'rtcp expose -h' for usage)`},
		{"expose dp without port", []string{"expose", "-dp", "nowhere", "-name", "x", "-to", to}, 2,
			`rtcp expose: -dp "nowhere": want host:port, such as dp.example.com:9000 (or a list of them, or ws://host:port/rtcp) (run 'rtcp expose -h' for usage)`},
		{"connect dp without port", []string{"connect", "-dp", "nowhere", "-name", "x", "-listen", "127.0.0.1:0"}, 2,
			`rtcp connect: -dp "nowhere": want host:port, such as dp.example.com:9000 (or a list of them, or ws://host:port/rtcp) (run 'rtcp connect -h' for usage)`},
		{"dp of another scheme", []string{"connect", "-stdio", "-dp", "ftp://h:21", "-name", "x"}, 2,
			`rtcp connect: -dp "ftp://h:21": want host:port or a ws:// or wss:// URL, not ftp:// (run 'rtcp connect -h' for usage)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if msg != tt.want {
				t.Errorf("stderr:\n\t%s\nwant\n\t%s", msg, tt.want)
			}
		})
	}
}

func TestCheckDP(t *testing.T) {
	tests := []struct {
		dp string
		ok bool
	}{
		{"dp.example.com:9000", true},
		{"127.0.0.1:9000", true},
		{"[::1]:9000", true},
		{":9000", true},
		{"h:ssh", true},
		{"h1:9000,h2:9000", true},
		{"ws://h:8080/rtcp", true},
		{"wss://h/rtcp", true},
		{"h", false},
		{"h:", false},
		{"h:0", false},
		{"h:99999", false},
		{"h:no-such-service", false},
		{"a b:1", false},
		{"h1:9000,h2", false},
		{"h1:9000,", false},
		{"ftp://h:21", false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("connect", flag.ContinueOnError)
		if err := checkDP(fs, tt.dp); (err == nil) != tt.ok {
			t.Errorf("checkDP(%q) = %v, want ok %v", tt.dp, err, tt.ok)
		}
	}
}

// FuzzCheckDP: checkDP never panics, and what it accepts is a ws:// or
// wss:// URL or host:port pairs with a port in 1-65535.
func FuzzCheckDP(f *testing.F) {
	for _, s := range []string{"h:9000", "[::1]:9000", "h1:1,h2:2", "ws://h:8080/rtcp", "h", "h:0", "a b:1", "ftp://h:21", ":ssh", "h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dp string) {
		fs := flag.NewFlagSet("connect", flag.ContinueOnError)
		if checkDP(fs, dp) != nil {
			return
		}
		if u, err := url.Parse(dp); err == nil && u.Scheme != "" && u.Host != "" {
			return
		}
		for _, a := range strings.Split(dp, ",") {
			_, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatalf("checkDP accepted %q: %v", dp, err)
			}
			if p, err := net.LookupPort("tcp", port); err != nil || p < 1 || p > 65535 {
				t.Fatalf("checkDP accepted %q with port %q", dp, port)
			}
		}
	})
}
