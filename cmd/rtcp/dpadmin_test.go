package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rtcp"
)

// adminURL is the address of the status page that p announced.
func adminURL(t *testing.T, p *proc) string {
	t.Helper()
	m := logRe("rtcp dp: status page", "url").FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no status page address on stderr:\n%s", p.out)
	}
	return strings.TrimSuffix(m[1], "/")
}

// httpGet gets url with the Authorization header auth (if not empty).
func httpGet(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestDPAdmin: rtcp dp -admin serves the status of the DP that runs,
// and the metrics that -metrics serves, counts by name included.
func TestDPAdmin(t *testing.T) {
	p := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-metrics", "127.0.0.1:0",
		"-max-name-stats", "5")
	url := adminURL(t, p)
	metricsURL := logRe("rtcp dp: metrics", "url").FindStringSubmatch(p.out.String())
	if metricsURL == nil {
		t.Fatalf("no metrics address on stderr:\n%s", p.out)
	}
	l, err := rtcp.Listen(p.addr, "one")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := rtcp.Dial(p.addr, "one")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}

	code, body := httpGet(t, url+"/api/status", "")
	var st rtcp.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/api/status: %d, %v:\n%s", code, err, body)
	}
	if len(st.Names) != 1 || st.Names[0].Name != "one" || st.Names[0].Sessions != 1 || len(st.Names[0].Links) != 1 ||
		st.MaxNameStats != 5 || !st.Accepting {
		t.Errorf("/api/status: %+v; want the name one, with 1 link and 1 session, and max_name_stats 5", st)
	}
	if code, body := httpGet(t, url+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := httpGet(t, url+"/", ""); code != http.StatusOK || !strings.Contains(body, "status.js") {
		t.Errorf("/: %d:\n%s", code, body)
	}
	for _, u := range []string{url + "/metrics", metricsURL[1]} {
		code, body := httpGet(t, u, "")
		for _, want := range []string{`rtcp_dp_name_links{name="one"} 1` + "\n", "rtcp_dp_conn_budget "} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s: %d, lacks %q:\n%s", u, code, want, body)
			}
		}
	}
}

// TestDPAdminLoopbackOnly: without a token, -admin refuses any address
// beyond this host, before it listens.
func TestDPAdminLoopbackOnly(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "[2001:db8::1]:0"} {
		_, err := launch(t, runDP, "-listen", "127.0.0.1:0", "-admin", addr)
		if err == nil || !strings.Contains(err.Error(), "-admin-token-file") {
			t.Errorf("-admin %s without a token: %v, want a refusal that names -admin-token-file", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:0", "localhost:0"} {
		if p, err := launch(t, runDP, "-listen", "127.0.0.1:0", "-admin", addr); err != nil {
			t.Errorf("-admin %s: %v", addr, err)
		} else {
			adminURL(t, p)
		}
	}
}

// TestDPAdminToken: with -admin-token-file, every request needs the
// token; a short token, or one without -admin, is refused at start.
func TestDPAdminToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const token = "0123456789abcdef0123"
	good := write("good", token+"\n")
	p := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-admin-token-file", good)
	url := adminURL(t, p)
	for _, path := range []string{"/", "/api/status", "/healthz", "/metrics"} {
		if code, _ := httpGet(t, url+path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
		if code, _ := httpGet(t, url+path, "Bearer "+token[1:]); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code, _ := httpGet(t, url+path, "Bearer "+token); code != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-admin", "127.0.0.1:0", "-admin-token-file", write("short", "0123456789\n")}, "at least 16"},
		{[]string{"-admin", "127.0.0.1:0", "-admin-token-file", write("spaced", "0123456789 abcdef0123\n")}, "one word"},
		{[]string{"-admin", "127.0.0.1:0", "-admin-token-file", filepath.Join(dir, "missing")}, "-admin-token-file"},
		{[]string{"-admin-token-file", good}, "give -admin"},
	} {
		if _, err := launch(t, runDP, append([]string{"-listen", "127.0.0.1:0"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error that says %q", c.args, err, c.want)
		}
	}
}
