package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"rtcp"
)

func TestDPMetrics(t *testing.T) {
	p := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-max-names", "1", "-keepalive", "5s")
	m := regexp.MustCompile(`metrics on (http://\S+/metrics)`).FindStringSubmatch(p.out.String())
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

func TestDPHardeningUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", ":0", "-max-names", "-1"},
		{"-listen", ":0", "-handshake-timeout", "-1s"},
	} {
		if _, err := launch(t, runDP, args...); err == nil || !strings.Contains(err.Error(), "want a positive") {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
