package cccp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"rtcp"
	"rtcp/cccp"
	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
	wire "rtcp/protocol/cccp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const devicePort = 7000

// env is a DP and a CCCP proxy on an in-memory network, for use inside a
// synctest bubble.
type env struct {
	t      *testing.T
	n      *memNet
	dp     *rtcp.DiscoverPoint
	p      *cccp.Proxy
	logs   *flowtest.Logs // the proxy's
	served chan error
}

func newEnv(t *testing.T, minPort, maxPort int) *env {
	return newEnvDP(t, new(rtcp.DiscoverPoint), minPort, maxPort)
}

// newEnvDP is newEnv with a DP of the caller's.
func newEnvDP(t *testing.T, dp *rtcp.DiscoverPoint, minPort, maxPort int) *env {
	logs, logger := flowtest.NewLogs()
	e := &env{t: t, n: newMemNet(), dp: dp, logs: logs, served: make(chan error, 1)}
	e.p = &cccp.Proxy{DP: e.dp, MinPort: minPort, MaxPort: maxPort, Host: "proxy.example.net", Listen: e.n.Listen,
		Logger: logger}
	l, err := e.n.Listen("tcp", ":"+strconv.Itoa(devicePort))
	if err != nil {
		t.Fatal(err)
	}
	go func() { e.served <- e.p.ServeDevices(l) }()
	return e
}

func (e *env) close() {
	e.p.Close()
	e.dp.Close()
	if err := <-e.served; !errors.Is(err, cccp.ErrProxyClosed) {
		e.t.Errorf("ServeDevices = %v, want ErrProxyClosed", err)
	}
}

// warned reports whether the proxy logged a warning msg for which ok
// holds.
func (e *env) warned(msg string, ok func(r flowtest.Record) bool) bool {
	return slices.ContainsFunc(e.logs.Find(slog.LevelWarn, msg), ok)
}

// get sends an API request from a loopback address and checks that the
// answer is JSON, or empty.
func (e *env) get(target string, hdr ...string) (int, string) {
	e.t.Helper()
	return apiGet(e.t, e.p, "GET", target, "127.0.0.1:50000", hdr...)
}

func apiGet(t *testing.T, h http.Handler, method, target, from string, hdr ...string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = from
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	h.ServeHTTP(rec, req)
	body := rec.Body.String()
	if body == "" && rec.Header().Get("Content-Type") == "" {
		return rec.Code, ""
	}
	if !json.Valid([]byte(body)) || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s: %d %q is not a JSON answer", method, target, rec.Code, body)
	}
	return rec.Code, strings.TrimSpace(body)
}

func (e *env) on(query string) int {
	e.t.Helper()
	code, body := e.get("/on?" + query)
	var r wire.OnResponse
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Host != "proxy.example.net" {
		e.t.Fatalf("/on?%s: %d %s", query, code, body)
	}
	return r.Port
}

func (e *env) status(serial string) wire.StatusResponse {
	e.t.Helper()
	synctest.Wait()
	code, body := e.get("/status?serial=" + serial)
	var st wire.StatusResponse
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		e.t.Fatalf("/status?serial=%s: %d %s", serial, code, body)
	}
	return st
}

func (e *env) wantOff(serial string, port int) {
	e.t.Helper()
	synctest.Wait()
	if code, body := e.get("/status?serial=" + serial); code != 404 {
		e.t.Fatalf("/status of a proxy that should be off: %d %s", code, body)
	}
	if e.n.open(port) {
		e.t.Fatalf("port %d still listens after the proxy went off", port)
	}
}

// device connects a device and registers it.
func (e *env) device(serial string) net.Conn {
	e.t.Helper()
	c, err := e.n.Dial(context.Background(), "198.51.100.7:50000", devicePort)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := wire.WriteSerial(c, serial); err != nil {
		e.t.Fatal(err)
	}
	synctest.Wait()
	return c
}

func (e *env) client(port int, from string) net.Conn {
	e.t.Helper()
	c, err := e.n.Dial(context.Background(), from, port)
	if err != nil {
		e.t.Fatal(err)
	}
	synctest.Wait()
	return c
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
}

// expectNothing checks that nothing arrives on c for a while (in bubble
// time) and that c is still open.
func expectNothing(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || !errors.Is(err, errDeadline) {
		t.Fatalf("read %d bytes, %v; want nothing and the connection open", n, err)
	}
	c.SetReadDeadline(time.Time{})
}

var errDeadline = os.ErrDeadlineExceeded

func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, errDeadline) {
		t.Fatalf("%s: read %d bytes, %v; want the connection closed", what, n, err)
	}
}

func TestControlAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		for _, tt := range []struct {
			target string
			code   int
			body   string // the whole answer, or a part of a message
		}{
			{"/status?serial=CLD-1", 404, `"cccp: no proxy is on for serial \"CLD-1\""`},
			{"/off?serial=CLD-1", 404, "no proxy is on"},
			{"/on?serial=CLD-1", 200, `{"host":"proxy.example.net","port":40000}`},
			{"/on?serial=CLD-1", 200, `{"host":"proxy.example.net","port":40000}`},
			{"/on?serial=CLD-1&persistent=true", 409, `already on for serial \"CLD-1\", on port 40000, with other parameters (persistent=false, timeout=0)`},
			{"/on?serial=CLD-2&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60", 200, `{"host":"proxy.example.net","port":40001}`},
			{"/status?serial=CLD-1", 200, `{"device_connected":false,"client_connected":false,"transferred":0}`},
			{"/off?serial=CLD-1", 200, ""},
			{"/off?serial=CLD-1", 404, "no proxy is on"},
			{"/status?serial=CLD-1", 404, "no proxy is on"},
			{"/on", 400, "serial is missing"},
			{"/on?serial=", 400, "is empty"},
			{"/on?serial=CLD-1&persistant=true", 400, `unknown parameter \"persistant\"`},
			{"/on?serial=CLD-1&persistent=yes", 400, "neither true nor false"},
			{"/on?serial=CLD-1&ip_whitelist=example.com", 400, "ip_whitelist"},
			{"/on?serial=CLD-1&timeout=1.5", 400, "timeout"},
			{"/on?serial=CLD-1&serial=CLD-2", 400, "given 2 times"},
			{"/on?serial=a%00b", 400, "control character"},
			{"/off", 400, "serial is missing"},
			{"/status?serial=CLD-1&x=1", 400, "unknown parameter"},
			{"/onn?serial=CLD-1", 404, "no endpoint"},
		} {
			code, body := e.get(tt.target)
			if code != tt.code || !strings.Contains(body, tt.body) || tt.body == "" && body != "" {
				t.Errorf("GET %s: %d %s, want %d with %s", tt.target, code, body, tt.code, tt.body)
			}
			if code >= 400 {
				var er wire.ErrorResponse
				if json.Unmarshal([]byte(body), &er) != nil || er.Message == "" {
					t.Errorf("GET %s: error answer %s has no message", tt.target, body)
				}
			}
		}
		if code, body := apiGet(t, e.p, "POST", "/on?serial=CLD-3", "127.0.0.1:1"); code != 405 || !strings.Contains(body, "use GET") {
			t.Errorf("POST /on: %d %s", code, body)
		}
		// No token: only loopback clients.
		if code, body := apiGet(t, e.p, "GET", "/status?serial=CLD-2", "192.0.2.9:1"); code != 401 || !strings.Contains(body, "loopback") {
			t.Errorf("from another host without a token: %d %s", code, body)
		}
		if code, _ := apiGet(t, e.p, "GET", "/status?serial=CLD-2", "[::1]:1"); code != 200 {
			t.Errorf("from ::1 without a token: %d", code)
		}
	})
}

// /off answers 200 with no body, as the documentation gives it.
func TestOffHasNoBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		e.on("serial=CLD-1")
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/off?serial=CLD-1", nil)
		req.RemoteAddr = "127.0.0.1:50000"
		e.p.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
			t.Fatalf("/off: %d, Content-Type %q, body %q; want 200 with no body",
				rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	})
}

// An /on for a serial whose proxy is on gets that proxy if it asks for the
// same, and 409 if it asks for something else; either way the proxy keeps
// its parameters, its timeout included.
func TestOnAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		first := "serial=CLD-1&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60"
		port := e.on(first)
		time.Sleep(50 * time.Second)
		for _, same := range []string{
			first,
			"timeout=60&ip_whitelist=192.0.2.1,10.1.2.3/8,192.0.2.1&persistent=true&serial=CLD-1",
		} {
			if p := e.on(same); p != port {
				t.Errorf("/on?%s: port %d, want the proxy's %d", same, p, port)
			}
		}
		for _, other := range []string{
			"serial=CLD-1",
			"serial=CLD-1&persistent=false&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60",
			"serial=CLD-1&persistent=true&ip_whitelist=10.0.0.0/8&timeout=60",
			"serial=CLD-1&persistent=true&timeout=60",
			"serial=CLD-1&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=600",
		} {
			code, body := e.get("/on?" + other)
			var er wire.ErrorResponse
			json.Unmarshal([]byte(body), &er)
			want := `cccp: a proxy is already on for serial "CLD-1", on port 40000, with other parameters ` +
				`(persistent=true, ip_whitelist=10.0.0.0/8,192.0.2.1, timeout=60); ` +
				`repeat /on with those to get its port, or turn it off with /off?serial=CLD-1 first`
			if code != 409 || er.Message != want {
				t.Errorf("/on?%s: %d %s, want 409 with %s", other, code, body, want)
			}
		}
		// The timeout runs from the first /on: 60 s, not 600.
		time.Sleep(11 * time.Second)
		e.wantOff("CLD-1", port)
		if p := e.on("serial=CLD-1&timeout=600"); p == 0 {
			t.Fatal("no port after /off")
		}
	})
}

func TestControlAPIToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40000)
		defer e.close()
		e.p.Token = "s3cret"
		for _, tt := range []struct {
			hdr  []string
			code int
		}{
			{nil, 401},
			{[]string{"Authorization", "Bearer wrong"}, 401},
			{[]string{"Authorization", "Basic s3cret"}, 401},
			{[]string{"Authorization", "Bearer s3cret"}, 200},
		} {
			code, body := apiGet(t, e.p, "GET", "/on?serial=CLD-1", "192.0.2.9:1", tt.hdr...)
			if code != tt.code {
				t.Errorf("with %q: %d %s, want %d", tt.hdr, code, body, tt.code)
			}
		}
	})
}

func TestPortExhaustion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40002)
		defer e.close()
		// Another program holds 40001: it is skipped.
		other, _ := e.n.Listen("tcp", ":40001")
		defer other.Close()
		if p := e.on("serial=A"); p != 40000 {
			t.Fatalf("A got port %d", p)
		}
		if p := e.on("serial=B"); p != 40002 {
			t.Fatalf("B got port %d, want 40002 (40001 is taken)", p)
		}
		code, body := e.get("/on?serial=C")
		if code != 503 || body != `{"message":"No available ports"}` {
			t.Fatalf("/on with every port in use: %d %s", code, body)
		}
		e.get("/off?serial=A")
		if p := e.on("serial=C"); p != 40000 {
			t.Fatalf("C got port %d after A's was freed", p)
		}
		// A listen error other than "in use" is a 500 with its message.
		e.n.fail = errListen
		e.get("/off?serial=B")
		code, body = e.get("/on?serial=D")
		if code != 500 || !strings.Contains(body, "permission denied") {
			t.Fatalf("/on when listening fails: %d %s", code, body)
		}
		// Without a port range every /on is a 500 that says so.
		e.p.MaxPort = 0
		if code, body := e.get("/on?serial=E"); code != 500 || !strings.Contains(body, "port range") {
			t.Fatalf("/on without a port range: %d %s", code, body)
		}
	})
}

func TestNonPersistent(t *testing.T) {
	for _, leaves := range []string{"client", "device"} {
		t.Run(leaves+" leaves", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, 40000, 40009)
				defer e.close()
				port := e.on("serial=CLD-1")
				dev := e.device("CLD-1")
				// What the device sends before a client comes is kept.
				send(t, dev, "banner")
				if st := e.status("CLD-1"); !st.DeviceConnected || st.ClientConnected {
					t.Fatalf("status %+v, want the device only", st)
				}
				cl := e.client(port, "203.0.113.5:40001")
				expect(t, cl, "banner")
				send(t, cl, "ping")
				expect(t, dev, "ping")
				send(t, dev, "pong!")
				expect(t, cl, "pong!")
				if st := e.status("CLD-1"); st != (wire.StatusResponse{DeviceConnected: true, ClientConnected: true, Transferred: 15}) {
					t.Fatalf("status %+v, want both connected and 15 bytes", st)
				}
				if leaves == "client" {
					cl.Close()
					expectClosed(t, dev, "device after the client left")
				} else {
					dev.Close()
					expectClosed(t, cl, "client after the device left")
				}
				e.wantOff("CLD-1", port)
			})
		})
	}
	t.Run("client leaves before the device comes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, 40000, 40009)
			defer e.close()
			port := e.on("serial=CLD-1")
			cl := e.client(port, "203.0.113.5:40001")
			if st := e.status("CLD-1"); st.DeviceConnected || !st.ClientConnected {
				t.Fatalf("status %+v, want the client only", st)
			}
			cl.Close()
			e.wantOff("CLD-1", port)
		})
	})
	t.Run("client first, its bytes wait for the device", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, 40000, 40009)
			defer e.close()
			port := e.on("serial=CLD-1")
			cl := e.client(port, "203.0.113.5:40001")
			send(t, cl, "request")
			dev := e.device("CLD-1")
			expect(t, dev, "request")
			cl.Close()
			expectClosed(t, dev, "device")
		})
	})
}

func TestPersistent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		port := e.on("serial=CLD-9&persistent=true")

		// A client without a device: what it sends is thrown away.
		cl := e.client(port, "203.0.113.5:40001")
		send(t, cl, "lost")
		synctest.Wait() // the proxy has read (and dropped) it before the device comes
		dev := e.device("CLD-9")
		send(t, cl, "hello")
		expect(t, dev, "hello")
		send(t, dev, "hi")
		expect(t, cl, "hi")

		// The device goes: the client stays, its bytes are dropped.
		dev.Close()
		if st := e.status("CLD-9"); st != (wire.StatusResponse{DeviceConnected: false, ClientConnected: true, Transferred: 7}) {
			t.Fatalf("status after the device left: %+v", st)
		}
		send(t, cl, "dropped")
		synctest.Wait()
		// The device comes back (and re-registers): the same client goes on.
		dev = e.device("CLD-9")
		send(t, cl, "again")
		expect(t, dev, "again")

		// The client goes: the device stays, what it sends is dropped.
		cl.Close()
		if st := e.status("CLD-9"); st != (wire.StatusResponse{DeviceConnected: true, ClientConnected: false, Transferred: 12}) {
			t.Fatalf("status after the client left: %+v", st)
		}
		send(t, dev, "nobody hears this")
		synctest.Wait()
		cl = e.client(port, "203.0.113.5:40002")
		expectNothing(t, cl)
		send(t, dev, "welcome")
		expect(t, cl, "welcome")

		// /off ends it all.
		if code, _ := e.get("/off?serial=CLD-9"); code != 200 {
			t.Fatal("/off failed")
		}
		expectClosed(t, cl, "client after /off")
		e.wantOff("CLD-9", port)
		// The device stays registered for the next /on.
		port = e.on("serial=CLD-9")
		if st := e.status("CLD-9"); !st.DeviceConnected || st.Transferred != 0 {
			t.Fatalf("status of a new proxy: %+v", st)
		}
		dev.Close()
	})
}

// A second client of a proxy that has one is refused.
func TestOneClientAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		port := e.on("serial=CLD-1&persistent=true")
		dev := e.device("CLD-1")
		defer dev.Close()
		cl := e.client(port, "203.0.113.5:40001")
		defer cl.Close()
		second := e.client(port, "203.0.113.5:40002")
		expectClosed(t, second, "a second client")
		send(t, cl, "x")
		expect(t, dev, "x")
	})
}

func TestWhitelist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		port := e.on("serial=CLD-1&ip_whitelist=10.0.0.0/8,2001:db8::1&persistent=true")
		dev := e.device("CLD-1")
		defer dev.Close()
		for _, from := range []string{"192.0.2.1:1000", "[2001:db8::2]:1000", "11.0.0.1:1000"} {
			c := e.client(port, from)
			expectClosed(t, c, "client from "+from)
		}
		if st := e.status("CLD-1"); st.ClientConnected {
			t.Fatalf("a refused client counts as connected: %+v", st)
		}
		for _, from := range []string{"10.1.2.3:1000", "[2001:db8::1]:1000", "[::ffff:10.9.9.9]:1000"} {
			c := e.client(port, from)
			send(t, c, "ok")
			expect(t, dev, "ok")
			c.Close()
			synctest.Wait()
		}
	})
}

func TestTimeout(t *testing.T) {
	t.Run("no client in time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, 40000, 40009)
			defer e.close()
			port := e.on("serial=CLD-1&timeout=30&persistent=true")
			time.Sleep(29 * time.Second)
			e.status("CLD-1")
			time.Sleep(2 * time.Second)
			e.wantOff("CLD-1", port)
		})
	})
	t.Run("a client cancels it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, 40000, 40009)
			defer e.close()
			port := e.on("serial=CLD-1&timeout=30&persistent=true")
			time.Sleep(10 * time.Second)
			cl := e.client(port, "203.0.113.5:40001")
			cl.Close()
			time.Sleep(time.Hour)
			if st := e.status("CLD-1"); st.ClientConnected {
				t.Fatalf("status %+v", st)
			}
		})
	})
	t.Run("a refused client does not", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, 40000, 40009)
			defer e.close()
			port := e.on("serial=CLD-1&timeout=30&ip_whitelist=10.0.0.1")
			e.client(port, "10.0.0.2:1").Close()
			time.Sleep(31 * time.Second)
			e.wantOff("CLD-1", port)
		})
	})
}

// A connection that registers a serial a live device holds is refused,
// with a logged reason, and the device carries on (issue 14: an anonymous
// "CLD-1\r" used to evict the real CLD-1). Once the device has gone, its
// next registration takes the serial, and a client in a persistent
// session carries on with it.
func TestReRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		port := e.on("serial=CLD-1&persistent=true")
		old := e.device("CLD-1")
		cl := e.client(port, "203.0.113.5:40001")
		send(t, cl, "one")
		expect(t, old, "one")

		c, err := e.n.Dial(context.Background(), "192.0.2.66:6666", devicePort)
		if err != nil {
			t.Fatal(err)
		}
		send(t, c, "CLD-1\r")
		expectClosed(t, c, "a stranger registering a live device's serial")
		if !e.warned("cccp: device refused", func(r flowtest.Record) bool {
			return r.Attrs["serial"] == "CLD-1" && r.Attrs["remote"] == "192.0.2.66:6666" &&
				strings.HasPrefix(r.Attrs["reason"], "a live connection from 198.51.100.7:50000 holds the serial")
		}) {
			t.Errorf("no refusal with its reason in the log: %v", e.logs.AtLeast(slog.LevelWarn))
		}
		send(t, cl, "still")
		expect(t, old, "still")
		send(t, old, "here")
		expect(t, cl, "here")

		old.Close()
		if st := e.status("CLD-1"); st.DeviceConnected {
			t.Fatalf("status %+v after the device left", st)
		}
		dev := e.device("CLD-1")
		send(t, cl, "two")
		expect(t, dev, "two")
		send(t, dev, "back")
		expect(t, cl, "back")
		if st := e.status("CLD-1"); st != (wire.StatusResponse{DeviceConnected: true, ClientConnected: true, Transferred: 19}) {
			t.Fatalf("status %+v", st)
		}
		cl.Close()
		dev.Close()
	})
}

// A device that does not register properly, or in time, is dropped.
func TestBadRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		for _, line := range []string{"CLD-1\n", "\x16\x03\x01", ""} {
			c, err := e.n.Dial(context.Background(), "198.51.100.7:1", devicePort)
			if err != nil {
				t.Fatal(err)
			}
			if line != "" {
				send(t, c, line)
			}
			expectClosed(t, c, "device that sent "+strconvQuote(line))
		}
	})
}

func strconvQuote(s string) string { return strconv.Quote(s) }

// ghost connects to port, sends line and then size bytes of data, and
// closes, as the attack of issue 14 did; it returns the proxy's side of
// the connection. The write gives up after a minute of bubble time, so
// that a proxy that stops reading fails the test instead of hanging it.
func (e *env) ghost(port int, from, line string, size int) *memnet.Conn {
	e.t.Helper()
	c, srv, err := e.n.dialBoth(context.Background(), from, port)
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(time.Minute))
		c.Write(append([]byte(line), make([]byte, size)...))
	}()
	return srv
}

// gatedRegistry holds every Register until gate is closed.
type gatedRegistry struct {
	rtcp.MemoryRegistry
	gate chan struct{}
}

func (r *gatedRegistry) Register(ctx context.Context, reg rtcp.Registration) error {
	select {
	case <-r.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.MemoryRegistry.Register(ctx, reg)
}

// Of two connections that register one serial at once, the first keeps
// it and the second is refused.
func TestRegistrationRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := &gatedRegistry{gate: make(chan struct{})}
		e := newEnvDP(t, &rtcp.DiscoverPoint{Registry: reg}, 40000, 40009)
		defer e.close()
		first := e.device("CLD-1") // held in Register
		second := e.device("CLD-1")
		expectClosed(t, second, "a second registration while the first is under way")
		if !e.warned("cccp: device refused", func(r flowtest.Record) bool {
			return r.Attrs["reason"] == "another connection is registering the same serial"
		}) {
			t.Errorf("no refusal with its reason in the log: %v", e.logs.AtLeast(slog.LevelWarn))
		}
		close(reg.gate)
		port := e.on("serial=CLD-1")
		cl := e.client(port, "203.0.113.5:40001")
		send(t, cl, "first?")
		expect(t, first, "first?")
		cl.Close()
		expectClosed(t, first, "device of a non-persistent proxy whose client left")
	})
}

// A device or client that sends more than the proxy keeps for an absent
// partner, or exactly that much, and closes is noticed: its connection is
// closed on the proxy's side and the device is forgotten. Before, the
// read-ahead stopped reading when full and never saw the close (issue 14:
// 20,000 of them in CLOSE-WAIT exhausted the DP's descriptors).
func TestGhostsAreForgotten(t *testing.T) {
	const bufSize = 64 << 10
	for _, size := range []int{66 << 10, bufSize, bufSize - 1, 0} {
		for _, proxy := range []string{"", "&persistent=false", "&persistent=true"} {
			t.Run(fmt.Sprintf("device sends %d bytes, proxy %q", size, proxy), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					e := newEnv(t, 40000, 40099)
					defer e.close()
					const n = 20
					var ghosts []*memnet.Conn
					for i := range n {
						serial := fmt.Sprintf("GHOST-%d", i)
						if proxy != "" {
							e.on("serial=" + serial + proxy)
						}
						ghosts = append(ghosts, e.ghost(devicePort, "198.51.100.7:50000", serial+"\r", size))
					}
					synctest.Wait()
					for i, g := range ghosts {
						if !isClosed(g) {
							t.Errorf("ghost %d: the proxy has not closed its side", i)
						}
						if proxy != "" {
							if st := e.status(fmt.Sprintf("GHOST-%d", i)); st.DeviceConnected {
								t.Errorf("ghost %d: /status says the device is connected", i)
							}
						}
					}
					if names := e.dp.Registry.(*rtcp.MemoryRegistry).Len(); names != 0 {
						t.Errorf("the DP still has %d names of ghost devices", names)
					}
				})
			})
		}
	}
	for _, size := range []int{66 << 10, bufSize, 0} {
		for _, proxy := range []string{"&persistent=false", "&persistent=true"} {
			t.Run(fmt.Sprintf("client sends %d bytes, proxy %q", size, proxy), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					e := newEnv(t, 40000, 40099)
					defer e.close()
					port := e.on("serial=CLD-1" + proxy)
					g := e.ghost(port, "203.0.113.5:40001", "", size)
					synctest.Wait()
					if !isClosed(g) {
						t.Fatal("the proxy has not closed its side of the client")
					}
					if proxy == "&persistent=true" {
						if st := e.status("CLD-1"); st.ClientConnected {
							t.Error("/status says the client is connected")
						}
					} else {
						e.wantOff("CLD-1", port)
					}
				})
			})
		}
	}
}

// A device that sends more than the proxy keeps before a client comes is
// disconnected; one that sends as much as it keeps and waits delivers all
// of it to the client.
func TestEarlyBytesBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		e.p.BufferSize = 10
		port := e.on("serial=CLD-1")
		dev := e.device("CLD-1")
		send(t, dev, "0123456789")
		cl := e.client(port, "203.0.113.5:40001")
		expect(t, cl, "0123456789")
		// In a session the client's pace holds the device back: more than
		// the bound passes.
		go dev.Write([]byte(strings.Repeat("x", 100)))
		expect(t, cl, strings.Repeat("x", 100))
		cl.Close()
		expectClosed(t, dev, "device after its client left")

		e.on("serial=CLD-2")
		dev = e.device("CLD-2")
		send(t, dev, "0123456789X")
		expectClosed(t, dev, "device that sent more than the bound")
		if st := e.status("CLD-2"); st.DeviceConnected {
			t.Fatalf("status %+v after the device was disconnected", st)
		}
	})
}

// trackListener records the connections it accepts, to see when the
// server closes them.
type trackListener struct {
	net.Listener
	accepted chan *closeConn
}

// closeConn is a net.Conn that tells when it was closed.
type closeConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{} // closed by Close
}

func (c *closeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// isClosed reports whether the proxy has closed c.
func isClosed(c *memnet.Conn) bool {
	select {
	case <-c.Closed():
		return true
	default:
		return false
	}
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ac := &closeConn{Conn: c, closed: make(chan struct{})}
	l.accepted <- ac
	return ac, nil
}

// The ghosts of issue 14 over real TCP on loopback, where the kernel takes
// a ghost's whole write and its close at once: the proxy closes its side
// of every one.
func TestGhostsOverLoopback(t *testing.T) {
	const n = 50
	dp := new(rtcp.DiscoverPoint)
	defer dp.Close()
	p := &cccp.Proxy{DP: dp, MinPort: 1, MaxPort: 1}
	defer p.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &trackListener{Listener: l, accepted: make(chan *closeConn, n)}
	served := make(chan error, 1)
	go func() { served <- p.ServeDevices(tl) }()
	defer func() { p.Close(); <-served }()
	for i := range n {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(append([]byte(fmt.Sprintf("GHOST-%d\r", i)), make([]byte, 66<<10)...)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	timeout := time.NewTimer(30 * time.Second) // only to fail, not to wait
	defer timeout.Stop()
	for i := range n {
		var c *closeConn
		select {
		case c = <-tl.accepted:
		case <-timeout.C:
			t.Fatalf("%d of %d ghosts accepted", i, n)
		}
		select {
		case <-c.closed:
		case <-timeout.C:
			t.Fatalf("the proxy has not closed its side of ghost %s", c.RemoteAddr())
		}
	}
	if names := dp.Registry.(*rtcp.MemoryRegistry).Len(); names != 0 {
		t.Errorf("the DP still has %d names of ghost devices", names)
	}
}
