package rtcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// getStatus asks the admin server at url for its /api/status.
func getStatus(t *testing.T, url string) Status {
	t.Helper()
	resp, err := http.Get(url + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/api/status: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var st Status
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func nameStatus(t *testing.T, st Status, name string) NameStatus {
	t.Helper()
	for _, ns := range st.Names {
		if ns.Name == name {
			return ns
		}
	}
	t.Fatalf("status has no name %q: %+v", name, st.Names)
	return NameStatus{}
}

// echoOnce writes msg on c and reads it back from the echo server.
func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v; want %q", got, err, msg)
	}
}

// TestAdminAPIStatus: /api/status of a DP with a server and a client
// session open says what is true, and keeps saying it as the session
// ends, a second owner is refused the name and a client asks for a
// name nobody serves.
func TestAdminAPIStatus(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	srv := httptest.NewServer(AdminHandler(dp, AdminOptions{}))
	defer srv.Close()

	l := listen(t, &ListenConfig{Transport: TransportYamux, Owner: "owner-1"}, addr, "web")
	echo(t, l)
	d := Dialer{Transport: TransportJSON}
	c, err := d.DialContext(context.Background(), addr, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "ping") // the relay is running: the session is counted

	st := getStatus(t, srv.URL)
	if !st.Accepting || st.Servers != 1 || st.Links != 1 || st.Sessions != 1 || st.SessionsTotal != 1 {
		t.Errorf("status: accepting %v, servers %d, links %d, sessions %d, total %d; want true, 1, 1, 1, 1",
			st.Accepting, st.Servers, st.Links, st.Sessions, st.SessionsTotal)
	}
	if st.MaxNameStats != defaultMaxNameStats || st.Time.Before(st.Started) {
		t.Errorf("max_name_stats %d, time %v, started %v", st.MaxNameStats, st.Time, st.Started)
	}
	web := nameStatus(t, st, "web")
	if web.Owner != "owner-1" || !web.Counted || web.Sessions != 1 || web.SessionsTotal != 1 {
		t.Errorf("web: %+v; want owner-1, counted, 1 session, 1 in all", web)
	}
	if len(web.Links) != 1 {
		t.Fatalf("web has %d links, want 1: %+v", len(web.Links), web.Links)
	}
	link := web.Links[0]
	host, _, err := net.SplitHostPort(link.Remote)
	if link.Transport != "yamux" || link.Owner != "owner-1" || link.Draining || err != nil || host != "127.0.0.1" ||
		link.AgeSeconds < 0 || link.Since.After(st.Time) {
		t.Errorf("web's link: %+v; want yamux from 127.0.0.1, owner-1, not draining", link)
	}

	// Once the client has its end of the stream, every byte is counted.
	c.(*Conn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close: %q, %v", rest, err)
	}
	// Refusals, of the name's would-be second owner and of a name
	// nobody serves: each is counted before the peer is told.
	if _, err := (&ListenConfig{Owner: "owner-2"}).Listen(context.Background(), addr, "web"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("a second owner's Listen: %v, want ErrNameTaken", err)
	}
	if _, err := d.DialContext(context.Background(), addr, "nobody"); !errors.Is(err, ErrRefused) {
		t.Fatalf("Dial of a name nobody serves: %v, want ErrRefused", err)
	}
	st = getStatus(t, srv.URL)
	web = nameStatus(t, st, "web")
	if web.SessionsTotal != 1 || web.BytesToServer != 4 || web.BytesToClient != 4 ||
		st.BytesToServers != 4 || st.BytesToClients != 4 {
		t.Errorf("after the session: web %+v, DP to servers %d, to clients %d; want 1 session, 4 bytes each way",
			web.NameCounts, st.BytesToServers, st.BytesToClients)
	}
	if want := map[string]uint64{"name_taken": 1}; !equalCounts(web.Refused, want) {
		t.Errorf("web's refusals %v, want %v", web.Refused, want)
	}
	if want := map[string]uint64{"no_server": 1}; !equalCounts(st.Other.Refused, want) || st.Other.SessionsTotal != 0 {
		t.Errorf("other names: %+v; want no_server 1 and nothing else", st.Other)
	}
	if st.Refused["name_taken"] != 1 || st.Refused["no_server"] != 1 {
		t.Errorf("DP's refusals %v, want name_taken 1 and no_server 1", st.Refused)
	}
	for _, ns := range st.Names {
		if ns.Name == "nobody" {
			t.Errorf("a name nobody serves is listed: %+v", ns)
		}
	}
}

func equalCounts(got, want map[string]uint64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestAdminHealthz: /healthz is 200 while the DP accepts, 503 once it
// shuts down.
func TestAdminHealthz(t *testing.T) {
	dp := new(DiscoverPoint)
	startDP(t, dp)
	srv := httptest.NewServer(AdminHandler(dp, AdminOptions{}))
	defer srv.Close()
	health := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := health(); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz of a running DP: %d %q, want 200 ok", code, body)
	}
	dp.Shutdown(context.Background())
	if code, body := health(); code != http.StatusServiceUnavailable || body != "closing\n" {
		t.Errorf("healthz of a DP shut down: %d %q, want 503 closing", code, body)
	}
	if st := getStatus(t, srv.URL); st.Accepting {
		t.Errorf("status of a DP shut down says it accepts")
	}
}

// TestAdminToken: with a Token, every path asks for it, as a bearer
// token; without one, it is served to all.
func TestAdminToken(t *testing.T) {
	dp := new(DiscoverPoint)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics\n") })
	const token = "s3cret-s3cret-s3cret"
	srv := httptest.NewServer(AdminHandler(dp, AdminOptions{Metrics: metrics, Token: token}))
	defer srv.Close()
	open := httptest.NewServer(AdminHandler(dp, AdminOptions{Metrics: metrics}))
	defer open.Close()
	get := func(url, auth string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", url)
		}
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/status.js", "/status.css", "/api/status", "/healthz", "/metrics"} {
		for _, c := range []struct {
			auth string
			want int
		}{
			{"", http.StatusUnauthorized},
			{"Bearer wrong", http.StatusUnauthorized},
			{"Bearer " + token + "x", http.StatusUnauthorized},
			{"Bearer " + token[:len(token)-1], http.StatusUnauthorized},
			{"Basic " + token, http.StatusUnauthorized},
			{token, http.StatusUnauthorized},
			{"Bearer " + token, http.StatusOK},
			{"bearer " + token, http.StatusOK},
		} {
			if got := get(srv.URL+path, c.auth); got != c.want {
				t.Errorf("%s with Authorization %q: %d, want %d", path, c.auth, got, c.want)
			}
		}
		if got := get(open.URL+path, ""); got != http.StatusOK {
			t.Errorf("%s without a token: %d, want 200", path, got)
		}
	}
	if got := get(open.URL+"/nothing", ""); got != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", got)
	}
}

// TestAdminPage: the page and its files are served, with a policy that
// lets the page load nothing from elsewhere.
func TestAdminPage(t *testing.T) {
	srv := httptest.NewServer(AdminHandler(new(DiscoverPoint), AdminOptions{}))
	defer srv.Close()
	for path, ctype := range map[string]string{"/": "text/html", "/status.js": "text/javascript", "/status.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(b) == 0 {
			t.Errorf("%s: %s, %q, %d bytes; want 200, %s", path, resp.Status, resp.Header.Get("Content-Type"), len(b), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
}

// chromium returns the path of a Chromium (or Chrome) binary, or skips.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary in $PATH (Debian: apt-get install chromium): the status page is not tested in a browser")
	return ""
}

// TestAdminPageInBrowser loads the status page in a headless Chromium
// and checks that the page, once its script has run, shows the server's
// name, its owner and its session counts, and that it is live: a
// session opened after the page first asked is on it, unreloaded.
func TestAdminPageInBrowser(t *testing.T) {
	bin := chromium(t)
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	admin := AdminHandler(dp, AdminOptions{})
	var asked atomic.Int32
	var second net.Conn // set before opened is sent
	opened := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/status" && asked.Add(1) == 2 {
			// Before the page's second question, a second session.
			c, err := Dial(addr, "web")
			if err == nil {
				second = c
				_, err = c.Write([]byte("pong"))
			}
			if err == nil {
				_, err = io.ReadFull(c, make([]byte, 4)) // the relay runs: the session is counted
			}
			opened <- err
		}
		admin.ServeHTTP(w, r)
	}))
	defer srv.Close()
	l := listen(t, &ListenConfig{Owner: "owner-<b>1</b>"}, addr, "web")
	echo(t, l)
	c, err := Dial(addr, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "ping")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // 5-10 s here; more only on a loaded machine
	defer cancel()
	// One run, for its start takes seconds: the page's DOM once its
	// script has had ten seconds of virtual time (which passes at once
	// when the page waits for nothing), and a screenshot.
	shot := t.TempDir() + "/status.png"
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--window-size=1200,800",
		"--screenshot="+shot, "--dump-dom", srv.URL+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.Bytes())
	}
	select {
	case err := <-opened:
		if second != nil {
			defer second.Close()
		}
		if err != nil {
			t.Fatalf("the second session: %v", err)
		}
	default:
		t.Fatalf("the page asked for the status %d times in ten seconds; want it to ask every two", asked.Load())
	}
	dom := string(out)
	row := regexp.MustCompile(`(?s)<tr data-name="web"[^>]*>(.*?)</tr>`).FindStringSubmatch(dom)
	if row == nil {
		t.Fatalf("the rendered page has no row for the name web:\n%s", dom)
	}
	for _, want := range []string{
		`<td class="c-name">web</td>`,
		`<td class="c-owner">owner-&lt;b&gt;1&lt;/b&gt;</td>`, // text, never markup
		`<td class="num c-sessions">2</td>`,
		`<td class="num c-sessions-total">2</td>`,
		`json from 127.0.0.1:`,
	} {
		if !strings.Contains(row[1], want) {
			t.Errorf("web's row lacks %s:\n%s", want, row[1])
		}
	}
	for _, want := range []string{`<dd id="s-sessions">2</dd>`, `<span id="state" class="state ok">accepting</span>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %s:\n%s", want, dom)
		}
	}
	b, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("screenshot: %d bytes, %v; want a PNG", len(b), err)
	}
}

// TestNameStatsBound: at most MaxNameStats names are counted on their
// own; the others, and a name spelt "other", are summed in Other; a
// name with neither link nor session gives its room to a new name, and
// its counts to Other.
func TestNameStatsBound(t *testing.T) {
	dp := &DiscoverPoint{MaxNameStats: 1}
	defer dp.Close()
	add := func(name string) (remove func()) {
		t.Helper()
		l := &echoLink{done: make(chan struct{})}
		remove, err := dp.AddLink(name, "owner-"+name, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.wg.Wait)
		return remove
	}
	relay := func(name, msg string) {
		t.Helper()
		a, b := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- dp.Relay(b, name, "") }()
		echoOnce(t, a, msg)
		a.Close()
		<-done // the session is over, and counted
	}
	counted := func(st Status) (names []string) {
		for _, ns := range st.Names {
			if ns.Counted {
				names = append(names, ns.Name)
			}
		}
		return names
	}

	removeA := add("a")
	defer add("other")()
	defer add("b")()
	relay("a", "aaaa")
	relay("b", "bb")
	relay("other", "o")
	st := dp.Status()
	if got := counted(st); len(got) != 1 || got[0] != "a" {
		t.Errorf("names counted on their own: %v, want [a]", got)
	}
	if a := nameStatus(t, st, "a"); a.SessionsTotal != 1 || a.BytesToServer != 4 || a.BytesToClient != 4 {
		t.Errorf("a: %+v, want one session of 4 bytes each way", a.NameCounts)
	}
	if b := nameStatus(t, st, "b"); b.SessionsTotal != 0 || len(b.Links) != 1 || b.Owner != "owner-b" {
		t.Errorf("b, not counted on its own: %+v", b)
	}
	if st.Other.SessionsTotal != 2 || st.Other.BytesToServer != 3 {
		t.Errorf("other: %+v, want b's and other's sessions, 3 bytes to servers", st.Other)
	}

	// a, without links, keeps its counts until a new name needs room.
	removeA()
	st = dp.Status()
	if a := nameStatus(t, st, "a"); !a.Counted || a.SessionsTotal != 1 || len(a.Links) != 0 || a.Owner != "" {
		t.Errorf("a, its link gone: %+v, want its counts and no link", a)
	}
	defer add("c")()
	relay("c", "c")
	st = dp.Status()
	if got := counted(st); len(got) != 1 || got[0] != "c" {
		t.Errorf("names counted on their own: %v, want [c]", got)
	}
	for _, ns := range st.Names {
		if ns.Name == "a" {
			t.Errorf("a is still listed: %+v", ns)
		}
	}
	if st.Other.SessionsTotal != 3 || st.Other.BytesToServer != 7 {
		t.Errorf("other: %+v, want a's counts added", st.Other)
	}
	if c := nameStatus(t, st, "c"); c.SessionsTotal != 1 || c.BytesToClient != 1 {
		t.Errorf("c: %+v", c.NameCounts)
	}

	// Negative: no name is counted on its own.
	none := &DiscoverPoint{MaxNameStats: -1}
	defer none.Close()
	l := &echoLink{done: make(chan struct{})}
	remove, err := none.AddLink("x", "o", l)
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if st := none.Status(); st.MaxNameStats != 0 || len(counted(st)) != 0 || len(st.Names) != 1 {
		t.Errorf("MaxNameStats -1: %d, counted %v, names %+v", st.MaxNameStats, counted(st), st.Names)
	}
}

// BenchmarkStatus: the cost of a snapshot of a DP with 10000 names, one
// link each, 1000 of them counted on their own (the default).
func BenchmarkStatus(b *testing.B) {
	dp := new(DiscoverPoint)
	defer dp.Close()
	for i := range 10000 {
		l := &echoLink{done: make(chan struct{})}
		remove, err := dp.AddLink(fmt.Sprintf("name-%d", i), fmt.Sprintf("owner-%d", i), l)
		if err != nil {
			b.Fatal(err)
		}
		defer remove()
	}
	for b.Loop() {
		if st := dp.Status(); len(st.Names) != 10000 {
			b.Fatalf("%d names", len(st.Names))
		}
	}
}
