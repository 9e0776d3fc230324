package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rtcp"
	"rtcp/wsconn"
)

func TestDPMetrics(t *testing.T) {
	p := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-max-names", "1", "-keepalive", "5s")
	m := logRe("rtcp dp: metrics", "url").FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no metrics address on stderr:\n%s", p.out)
	}
	l, err := rtcp.Listen(p.addr, "one")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := rtcp.Listen(p.addr, "two"); err == nil || !strings.Contains(err.Error(), "MaxNames") {
		t.Fatalf("a second name at a DP with -max-names 1: %v", err)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"rtcp_dp_servers 1\n", `rtcp_dp_refused_total{reason="max_names"} 1` + "\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

func TestDPSourceFlags(t *testing.T) {
	fs := newFlagSet("dp", "", "")
	f := addHardeningFlags(fs)
	if err := fs.Parse([]string{"-max-handshakes-per-source", "8", "-max-auth-failures-per-source", "-1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.check(fs); err != nil {
		t.Fatal(err)
	}
	var dp rtcp.DiscoverPoint
	f.configure(&dp)
	if dp.MaxHandshakesPerSource != 8 || dp.MaxAuthFailuresPerSource != -1 {
		t.Errorf("MaxHandshakesPerSource %d, MaxAuthFailuresPerSource %d; want 8 and -1 (no bound)",
			dp.MaxHandshakesPerSource, dp.MaxAuthFailuresPerSource)
	}
}

func TestDPHardeningUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", ":0", "-max-names", "-1"},
		{"-listen", ":0", "-handshake-timeout", "-1s"},
		{"-listen", ":0", "-max-conns", "-1"},
		{"-listen", ":0", "-max-conns-per-door", "-1"},
		{"-listen", ":0", "-http-timeout", "0s"},
		{"-listen", ":0", "-http-idle-timeout", "-1s"},
	} {
		if _, err := launch(t, runDP, args...); err == nil || !strings.Contains(err.Error(), "want a positive") {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// hangUpWithin reports how c ends: nil if the server closes it (or
// resets it) within d, else what the read got. d only bounds a failure.
func hangUpWithin(c net.Conn, d time.Duration) error {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// TestDPHTTPServersBounded: every HTTP server of the DP closes a
// keep-alive connection that idles, a request whose headers or body
// trickle in, after the times that -http-idle-timeout and -http-timeout
// set; an open WebSocket outlives them.
func TestDPHTTPServersBounded(t *testing.T) {
	const limit = "300ms"
	const failAfter = 5 * time.Second // well below the old 10 s header timeout
	port := seedFreePort(t)
	stderr := startSeedDP(t, "-metrics", "127.0.0.1:0", "-c8y-listen", "127.0.0.1:0",
		"-cccp-api", "127.0.0.1:0", "-cccp-devices", "127.0.0.1:0", "-cccp-ports", strconv.Itoa(port)+"-"+strconv.Itoa(port),
		"-admin", "127.0.0.1:0", "-http-timeout", limit, "-http-idle-timeout", limit)
	web := stderr.wait(t, logRe("rtcp dp: remote access and rtcp over WebSocket", "addr"))
	api := stderr.wait(t, logRe("rtcp dp: CCCP doors", "api"))
	metrics := stderr.wait(t, regexp.MustCompile(`msg="rtcp dp: metrics" url=http://(\S+)/metrics`))
	admin := stderr.wait(t, regexp.MustCompile(`msg="rtcp dp: status page" url=http://(\S+)/`))

	// A WebSocket opened now must outlive the server's request times.
	ws, err := (&wsconn.Dialer{URL: "ws://" + web + wsconn.DefaultPath}).DialContext(context.Background(), "tcp", web)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	for _, s := range []struct{ name, addr, path string }{
		{"metrics", metrics, "/metrics"},
		{"admin", admin, "/api/status"},
		{"c8y", web, "/service/remoteaccess/nothing"},
		{"cccp-api", api, "/status?serial=CLD-1"},
	} {
		t.Run(s.name+"/idle", func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET "+s.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Close {
				t.Fatal("the server ended the connection itself; want it kept alive")
			}
			if err := hangUpWithin(c, failAfter); err != nil {
				t.Errorf("an idle keep-alive connection: %v; want it closed after -http-idle-timeout %s", err, limit)
			}
		})
		t.Run(s.name+"/slow-header", func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET "+s.path+" HTTP/1.1\r\nHost: x\r\n")
			if err := hangUpWithin(c, failAfter); err != nil {
				t.Errorf("a request whose headers never end: %v; want it cut after -http-timeout %s", err, limit)
			}
		})
	}
	t.Run("c8y/slow-body", func(t *testing.T) {
		c, err := net.Dial("tcp", web)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /service/remoteaccess/keys HTTP/1.1\r\nHost: x\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=")
		if err := hangUpWithin(c, failAfter); err != nil {
			t.Errorf("a body that never ends: %v; want it cut after -http-timeout %s", err, limit)
		}
	})

	// The idle connections above have been cut, so the WebSocket's request
	// time is long over: it still carries a handshake to the DP, which
	// answers that nobody serves the name.
	d := rtcp.Dialer{Dial: func(context.Context, string, string) (net.Conn, error) { return ws, nil }}
	if _, err := d.DialContext(context.Background(), web, "nobody"); !errors.Is(err, rtcp.ErrRefused) {
		t.Errorf("a handshake over a WebSocket older than -http-timeout: %v; want the DP's refusal", err)
	}
}

// dialAll opens n connections to addr that send nothing, and returns
// them and a channel that gets one value for each that is reset.
func dialAll(t *testing.T, addr string, n int) ([]net.Conn, <-chan struct{}) {
	t.Helper()
	reset := make(chan struct{}, n)
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}
			reset <- struct{}{} // reset before connect returned
			continue
		}
		conns = append(conns, c)
		go func() {
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, syscall.ECONNRESET) {
				reset <- struct{}{}
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns, reset
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("the metrics door: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDPDoorsShareBudget floods -listen with connections that stay in
// their handshake: it takes its part of -max-conns and what is shared,
// and is refused beyond; the metrics door still serves, and counts.
func TestDPDoorsShareBudget(t *testing.T) {
	for _, c := range []struct {
		name     string
		args     []string
		dial     int
		admitted int
	}{
		// Two doors: a part of 20/4 = 5 each, and 10 to share.
		{"budget", []string{"-max-conns", "20"}, 20, 15},
		{"door cap", []string{"-max-conns-per-door", "3"}, 4, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustLaunch(t, runDP, append([]string{"-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
				"-handshake-timeout", "1m", "-log-level", "error"}, c.args...)...)
			m := logRe("rtcp dp: metrics", "url").FindStringSubmatch(p.out.String())
			if m == nil {
				t.Fatalf("no metrics address on stderr:\n%s", p.out)
			}
			_, reset := dialAll(t, p.addr, c.dial)
			for range c.dial - c.admitted {
				select {
				case <-reset:
				case <-time.After(time.Minute): // only a hang ends here
					t.Fatalf("fewer than %d of %d connections were refused", c.dial-c.admitted, c.dial)
				}
			}
			// Connections are taken in order: all have been, and the rest
			// are in.
			body := scrape(t, m[1])
			for _, want := range []string{
				`rtcp_dp_door_connections{door="listen"} ` + strconv.Itoa(c.admitted) + "\n",
				`rtcp_dp_door_refused_total{door="listen"} ` + strconv.Itoa(c.dial-c.admitted) + "\n",
				`rtcp_dp_door_connections{door="metrics"} 1` + "\n",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("metrics lack %q:\n%s", want, body)
				}
			}
		})
	}
}
