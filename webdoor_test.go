package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	_ "image/png"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// serveWeb serves h on a loopback port until the test ends, and returns
// the port's address. The door's idle connections are closed after the
// server.
func serveWeb(t *testing.T, h *HTTPDoor) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		h.CloseIdleConnections()
	})
	return l.Addr().String()
}

// serveBackend serves handler on l, a server's Listener, until the test
// ends.
func serveBackend(t *testing.T, l net.Listener, handler http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: handler}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// countingListener counts the sessions its server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// whoAmI answers with the server's name and what the door told it.
func whoAmI(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s|%s|%s|%s|%s%s%s", name, r.Host, r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("Forwarded"), r.Header.Get("X-Real-Ip"))
	})
}

// webGet sends a GET for host on the client connection c and returns the
// answer.
func webGet(t *testing.T, c net.Conn, br *bufio.Reader, host string, header ...string) (int, string) {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestHTTPDoorKeepAlive sends requests for two names on one client
// connection: each reaches its server, over one session per server that
// the requests share, and the server learns the client.
func TestHTTPDoorKeepAlive(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	servers := map[string]*countingListener{}
	for _, name := range []string{"alpha", "beta"} {
		l := &countingListener{Listener: listen(t, nil, addr, name)}
		servers[name] = l
		serveBackend(t, l, whoAmI(name))
	}
	door := serveWeb(t, dp.HTTPHandler("Dp.Test."))
	_, port, _ := net.SplitHostPort(door)

	c, err := net.Dial("tcp", door)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	for i, host := range []string{"alpha.dp.test:" + port, "BETA.dp.test", "alpha.dp.test.:" + port, "beta.dp.test"} {
		// A client's own X-Forwarded-For is not passed on.
		code, body := webGet(t, c, br, host, "X-Forwarded-For: 192.0.2.1", "Forwarded: for=192.0.2.1", "X-Real-IP: 192.0.2.1")
		name := strings.ToLower(strings.Split(host, ".")[0])
		want := fmt.Sprintf("%s|%s|127.0.0.1|%s|http", name, host, host)
		if code != http.StatusOK || body != want {
			t.Fatalf("request %d for %s: %d %q, want 200 %q", i, host, code, body, want)
		}
	}
	for name, l := range servers {
		if n := l.n.Load(); n != 1 {
			t.Errorf("server %s accepted %d sessions, want 1 (kept alive)", name, n)
		}
	}
	if st := dp.Stats(); st.SessionsTotal != 2 || st.Sessions != 2 {
		t.Errorf("Stats: %d sessions in all, %d open; want 2 and 2", st.SessionsTotal, st.Sessions)
	}
}

func TestHTTPDoorErrors(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
		AnonymousServers: true, AnonymousClients: true,
		Names: []NameRule{{Name: "walled", Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	}}
	addr := startDP(t, dp)
	remove, err := dp.AddLink("busy", "test", &refusingLink{fmt.Errorf("%w: busy", ErrRefused), make(chan struct{})})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	// A server that ends every session without an answer.
	mute := listen(t, nil, addr, "mute")
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	serveBackend(t, listen(t, nil, addr, "walled"), whoAmI("walled"))
	door := serveWeb(t, dp.HTTPHandler("dp.test"))

	for _, tc := range []struct {
		host string
		code int
		says []string // what the page must say
	}{
		{"nobody.dp.test", http.StatusNotFound, []string{`no server is registered as "nobody"`}},
		{"dp.test", http.StatusNotFound, []string{"not one of them", "dp.test"}},
		{"alpha.example.com", http.StatusNotFound, []string{"serves the names under dp.test", `"alpha.example.com"`}},
		{"a.b.dp.test", http.StatusNotFound, []string{`"a.b"`, "one DNS label"}},
		{"busy.dp.test", http.StatusBadGateway, []string{`server "busy" refused`, "busy"}},
		{"mute.dp.test", http.StatusBadGateway, []string{`server "mute" did not answer`}},
		{"walled.dp.test", http.StatusForbidden, []string{"unauthorized", "walled"}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+door+"/", nil)
			req.Host = tc.host
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d (%q), want %d", resp.StatusCode, body, tc.code)
			}
			for _, s := range tc.says {
				if !strings.Contains(string(body), s) {
					t.Errorf("page %q does not say %q", body, s)
				}
			}
		})
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if st := dp.Stats(); st.Refused["no_server"] != 1 || st.Refused["unauthorized"] != 1 || st.Refused["server_refused"] != 1 {
		t.Errorf("Stats.Refused = %v, want one each of no_server, unauthorized, server_refused", st.Refused)
	}
}

// TestHTTPDoorWebSocket echoes WebSocket messages through the door.
func TestHTTPDoorWebSocket(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	serveBackend(t, listen(t, nil, addr, "echo"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.SetReadLimit(1 << 20)
		for {
			typ, msg, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if err := ws.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	door := serveWeb(t, dp.HTTPHandler("dp.test"))
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, network, door) // echo.dp.test is here
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://echo.dp.test/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	for i := range 3 {
		msg := []byte(strings.Repeat(fmt.Sprint(i), 1+i*40000))
		if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(msg) {
			t.Fatalf("message %d: echoed %d bytes, want the %d sent", i, len(got), len(msg))
		}
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPDoorStreams passes a response on as the server writes it, and
// a request body as the client sends it.
func TestHTTPDoorStreams(t *testing.T) {
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	serveBackend(t, listen(t, nil, addr, "stream"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Echo each line of the request body at once.
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "got %s\n", sc.Text())
			rc.Flush()
		}
	}))
	door := serveWeb(t, dp.HTTPHandler("dp.test"))
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", "http://"+door+"/", pr)
	req.Host = "stream.dp.test"
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// Each line must come back before the next is sent.
		fmt.Fprintf(pw, "line %d\n", i)
		got, err := br.ReadString('\n')
		if want := fmt.Sprintf("got line %d\n", i); err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the request's end: %q, %v; want a clean end", rest, err)
	}
}

func TestWebName(t *testing.T) {
	for _, tc := range []struct{ host, domain, name string }{
		{"printer-7.dp.example.com", "dp.example.com", "printer-7"},
		{"Printer-7.DP.example.com.", webDomain(".DP.Example.com."), "printer-7"},
		{"printer-7.dp.example.com", "", ""},
		{"dp.example.com", "dp.example.com", ""},
		{".dp.example.com", "dp.example.com", ""},
		{"a.b.dp.example.com", "dp.example.com", ""},
		{"printer-7.xdp.example.com", "dp.example.com", ""},
		{"printer-7dp.example.com", "dp.example.com", ""},
		{"cccp:cld-1.dp.example.com", "dp.example.com", ""}, // a seed door's name
		{"a_b.dp.example.com", "dp.example.com", ""},
		{"-x.dp.example.com", "dp.example.com", ""},
	} {
		name, err := webName(tc.host, tc.domain)
		if name != tc.name || (err == nil) != (tc.name != "") {
			t.Errorf("webName(%q, %q) = %q, %v; want %q", tc.host, tc.domain, name, err, tc.name)
		}
	}
}

// TestHTTPDoorChromium opens http://printer-7.localhost:PORT/ in headless
// Chromium (which resolves *.localhost to loopback) through the DP's HTTP
// door, to a server that runs http.Serve on its rtcp Listener: a
// screenshot of the page, and the page as the browser built it.
func TestHTTPDoorChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
	}
	dp := &DiscoverPoint{Logger: testLogger()}
	addr := startDP(t, dp)
	serveBackend(t, listen(t, nil, addr, "printer-7"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>printer-7</title><h1>Hello from printer-7</h1><p id=via>via %s for %s</p>",
			html.EscapeString(r.Header.Get("X-Forwarded-Host")), html.EscapeString(r.Header.Get("X-Forwarded-For")))
	}))
	door := serveWeb(t, dp.HTTPHandler("localhost"))
	_, port, _ := net.SplitHostPort(door)
	url := "http://printer-7.localhost:" + port + "/"

	browse := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--user-data-dir=" + t.TempDir()}, append(args, url)...)
		cmd := exec.CommandContext(ctx, chromium, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}

	shot := filepath.Join(t.TempDir(), "page.png")
	if d := os.Getenv("RTCP_TEST_SCREENSHOT_DIR"); d != "" { // to look at it
		shot = filepath.Join(d, "page.png")
	}
	browse("--screenshot="+shot, "--window-size=800,600")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, format, err := image.DecodeConfig(f)
	if err != nil || format != "png" || cfg.Width != 800 || cfg.Height != 600 {
		t.Errorf("screenshot: %s %dx%d, %v; want an 800x600 png", format, cfg.Width, cfg.Height, err)
	}

	dom := string(browse("--dump-dom"))
	for _, want := range []string{"<h1>Hello from printer-7</h1>", "via printer-7.localhost:" + port + " for 127.0.0.1"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page does not say %q:\n%s", want, dom)
		}
	}
}
