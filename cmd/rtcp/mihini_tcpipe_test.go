package main

import (
	"bytes"
	"fmt"
	"io"
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

// startEchoUntilClose runs an echo service on addr that echoes each connection
// until its client closes.
func startEchoUntilClose(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Echo(t, l)
	return l.Addr().String()
}

// echoVia dials with dial and checks that msg comes back, retrying
// while the path is still being set up (a link that is not up yet closes
// the connection at once); it fails after a minute.
func echoVia(t *testing.T, dial func() (net.Conn, error), msg []byte) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last error
	for time.Now().Before(deadline) {
		c, err := dial()
		if err != nil {
			last = err
			continue
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		go c.Write(msg)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c, got)
		c.Close()
		if err == nil {
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo of %d bytes differs", len(msg))
			}
			return
		}
		last = err
	}
	t.Fatalf("no echo within a minute: %v", last)
}

func tcpDial(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", addr) }
}

// outputAddr finds the address that re captures in p's output.
func outputAddr(t *testing.T, p *proc, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no match for %q in the output:\n%s", re, p.out)
	}
	return m[1]
}

// TestMihiniCommands carries a client through "rtcp mihini-server" and
// "rtcp mihini-device" to an echo service.
func TestMihiniCommands(t *testing.T) {
	echo := startEchoUntilClose(t, "127.0.0.1:0")
	srv := mustLaunch(t, runMihiniServer, "-listen", "127.0.0.1:0", "-map", "127.0.0.1:0="+echo)
	clients := outputAddr(t, srv, `clients="(\S+) -> `)
	mustLaunch(t, runMihiniDevice, "-server", srv.addr, "-reconnect")
	echoVia(t, tcpDial(clients), bytes.Repeat([]byte("mihini "), 20000))
}

// TestDPMihini reaches an echo service behind "rtcp mihini-device" by name
// through "rtcp dp -mihini" and "rtcp connect". (Port mode and rtcp.Dial
// are the same path: package mihini tests them.)
func TestDPMihini(t *testing.T) {
	echo := startEchoUntilClose(t, "127.0.0.1:0")
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-mihini", "plc-7=127.0.0.1:0="+echo)
	door := outputAddr(t, dp, `msg="rtcp dp: Mihini devices become a server" addr=(\S+) name=plc-7`)
	mustLaunch(t, runMihiniDevice, "-server", door, "-reconnect")
	echoVia(t, func() (net.Conn, error) { return rtcp.Dial(dp.addr, "plc-7") }, []byte("by name"))
	conn := mustLaunch(t, runConnect, "-dp", dp.addr, "-name", "plc-7", "-listen", "127.0.0.1:0")
	echoVia(t, tcpDial(conn.addr), []byte("through rtcp connect"))
}

// TestTCPipeCommands runs the original's example on loopback: a server
// instance on 127.0.0.2 with two ports, a client instance on 127.0.0.3
// (long flag names) whose target is 127.0.0.4, and a connection on each
// port.
func TestTCPipeCommands(t *testing.T) {
	echo1 := startEchoUntilClose(t, "127.0.0.4:0")
	echo2 := startEchoUntilClose(t, "127.0.0.4:0")
	_, p1, _ := net.SplitHostPort(echo1)
	_, p2, _ := net.SplitHostPort(echo2)
	srv := mustLaunch(t, runTCPipe, "-s", "127.0.0.2:0", "-p", p1+","+p2, "-b", "127.0.0.2")
	mustLaunch(t, runTCPipe, "--client="+srv.addr, "--target=127.0.0.4", "-b", "127.0.0.3")
	for i, p := range []string{p1, p2} {
		echoVia(t, tcpDial(net.JoinHostPort("127.0.0.2", p)), []byte(fmt.Sprint("port ", i)))
	}
}

// TestTCPipeSecretFile runs two instances that share a -secret-file, and
// checks that a short secret is refused.
func TestTCPipeSecretFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("c2VjcmV0IG9mIHRoZSB0d28gaW5zdGFuY2Vz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	echo := startEchoUntilClose(t, "127.0.0.4:0")
	_, p, _ := net.SplitHostPort(echo)
	srv := mustLaunch(t, runTCPipe, "-s", "127.0.0.2:0", "-p", p, "-b", "127.0.0.2", "-secret-file", secret, "-log-format", "json")
	mustLaunch(t, runTCPipe, "-c", srv.addr, "-t", "127.0.0.4", "-b", "127.0.0.3", "-secret-file", secret)
	echoVia(t, tcpDial(net.JoinHostPort("127.0.0.2", p)), []byte("with a secret"))
	if logged(t, srv, "WARN", "") {
		t.Errorf("a secret file of mode 600 drew a warning:\n%s", srv.out)
	}

	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte(" short \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"tcpipe", "-s", "127.0.0.2:0", "-p", p, "-secret-file", short}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "holds 5 bytes; a secret must be at least 16 random bytes") {
		t.Errorf("a 5-byte secret: exit status %d, stderr %q; want 1 and the secret refused", code, stderr.String())
	}
}

func TestSeedUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the start of the one line on stderr
	}{
		{"mihini-server without map", []string{"mihini-server", "-listen", "127.0.0.1:0"}, "rtcp mihini-server: give at least one -map"},
		{"mihini-server bad map", []string{"mihini-server", "-listen", "127.0.0.1:0", "-map", ":1=:22"}, `rtcp mihini-server: invalid value ":1=:22" for flag -map: service ":22": no host`},
		{"mihini-server no listen", []string{"mihini-server", "-map", ":1=h:22"}, "rtcp mihini-server: -listen is required"},
		{"mihini-device no server", []string{"mihini-device"}, "rtcp mihini-device: -server is required"},
		{"dp bad mihini", []string{"dp", "-listen", "127.0.0.1:0", "-mihini", "plc=:9100"}, `rtcp dp: invalid value "plc=:9100" for flag -mihini: want NAME=ADDR=SERVICE_HOST:PORT`},
		{"tcpipe no mode", []string{"tcpipe", "-p", "1"}, "rtcp tcpipe: give one of -s PORT (server) and -c HOST:PORT (client)"},
		{"tcpipe both modes", []string{"tcpipe", "-s", "1", "--client=h:1", "-t", "h"}, "rtcp tcpipe: give one of -s PORT"},
		{"tcpipe bad ports", []string{"tcpipe", "--server=1", "--ports=1,x"}, `rtcp tcpipe: invalid value "1,x" for flag -ports: "x" is not a port`},
		{"tcpipe nothing to carry", []string{"tcpipe", "-c", "h:1"}, "rtcp tcpipe: give -p PORTS, -t TARGET or both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, tt.want) {
				t.Errorf("stderr = %q, want one line starting with %q", msg, tt.want)
			}
		})
	}
}

// TestTCPipePortsFlag checks the seed's port list syntax.
func TestTCPipePortsFlag(t *testing.T) {
	var f portsFlag
	if err := f.Set("40000,40001"); err != nil || f.String() != "40000,40001" {
		t.Errorf("Set(40000,40001) = %v, %q", err, f.String())
	}
	for _, bad := range []string{"", "0", "65536", "1,1", "a", "1-3"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded", bad)
		}
	}
	// -target-ports also takes ranges.
	r := portsFlag{ranges: true}
	if err := r.Set("22,8000-8002"); err != nil || r.String() != "22,8000,8001,8002" {
		t.Errorf("Set(22,8000-8002) = %v, %q", err, r.String())
	}
	if err := r.Set("1-65535"); err != nil || len(r.ports) != 65535 {
		t.Errorf("Set(1-65535) = %v, %d ports", err, len(r.ports))
	}
	for _, bad := range []string{"", "0-2", "5-4", "1-65536", "1-3,2", "-", "a-b"} {
		if err := r.Set(bad); err == nil {
			t.Errorf("ranges: Set(%q) succeeded", bad)
		}
	}
}
