package c8y_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"rtcp"
	"rtcp/c8y"
	wire "rtcp/protocol/c8y"
	"rtcp/wsconn"
)

// dpSetup is a DP with its Plan5 port and an HTTP server that serves the
// remote access endpoints.
type dpSetup struct {
	dp     *rtcp.DiscoverPoint
	srv    *c8y.Server
	http   *httptest.Server
	dpAddr string
}

func newDP(t *testing.T, token string) *dpSetup {
	t.Helper()
	dp := new(rtcp.DiscoverPoint)
	return serveDP(t, &c8y.Server{DP: dp, Token: token})
}

// serveDP serves srv and its DP.
func serveDP(t *testing.T, srv *c8y.Server) *dpSetup {
	t.Helper()
	s := &dpSetup{dp: srv.DP, srv: srv}
	mux := http.NewServeMux()
	mux.Handle("/service/remoteaccess/", s.srv)
	s.http = httptest.NewServer(mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.dpAddr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.dp.Serve(l) }()
	t.Cleanup(func() {
		s.srv.Close()
		s.dp.Close()
		s.http.Close()
		<-served
	})
	return s
}

// newKey creates a key through the HTTP API.
func (s *dpSetup) newKey(t *testing.T, token string, params url.Values) (int, c8y.KeyResponse, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.http.URL+c8y.KeysPath+"?"+params.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
		t.Fatalf("answer %d %q is not JSON", resp.StatusCode, body)
	}
	var kr c8y.KeyResponse
	json.Unmarshal(body, &kr)
	return resp.StatusCode, kr, string(body)
}

func echoService(t *testing.T) (string, int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return "127.0.0.1", l.Addr().(*net.TCPAddr).Port
}

func clientWS(s *dpSetup, key string) (net.Conn, error) {
	d := &wsconn.Dialer{Subprotocol: wire.Subprotocol}
	return d.DialURL(context.Background(), s.http.URL+c8y.ClientPrefix+url.PathEscape(key))
}

func echoes(t *testing.T, c net.Conn) {
	t.Helper()
	msg := "through the DP's own remote access " + strings.Repeat("!", 5000)
	go c.Write([]byte(msg))
	if got := readN(t, c, len(msg)); got != msg {
		t.Fatalf("echo read %.40q", got)
	}
}

// The agent, pointed at a DP instead of the cloud, and a client with the
// key, meet through the DP: device first or client first, by the client
// WebSocket or by rtcp.Dial.
func TestDPDeviceEndpoint(t *testing.T) {
	for _, tt := range []struct {
		name        string
		clientFirst bool
		dial        bool // rtcp.Dial by name instead of the client WebSocket
	}{
		{"device first, client WebSocket", false, false},
		{"client first, client WebSocket", true, false},
		{"device first, rtcp.Dial", false, true},
		{"client first, rtcp.Dial", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newDP(t, "tok")
			host, port := echoService(t)
			params := url.Values{"host": {host}, "port": {strconv.Itoa(port)}}
			if tt.dial {
				params.Set("name", "pi-7-ssh")
			}
			code, kr, body := s.newKey(t, "tok", params)
			if code != http.StatusCreated {
				t.Fatalf("create key: %d %s", code, body)
			}
			if tt.dial && kr.Name != "pi-7-ssh" || !tt.dial && kr.Name != kr.Key {
				t.Fatalf("key %+v has the wrong name", kr)
			}
			op, err := wire.ParseOperation([]byte(kr.Operation))
			if err != nil || op.Key != kr.Key || op.Port != port {
				t.Fatalf("operation %q: %+v, %v", kr.Operation, op, err)
			}

			var client net.Conn
			clientUp := make(chan error, 1)
			connect := func() {
				var err error
				if tt.dial {
					client, err = rtcp.Dial(s.dpAddr, kr.Name)
				} else {
					client, err = clientWS(s, kr.Key)
				}
				clientUp <- err
			}
			if tt.clientFirst {
				go connect()
				if !tt.dial {
					// The client WebSocket is up and waits for the device.
					if err := <-clientUp; err != nil {
						t.Fatal(err)
					}
				}
			}

			st := newLines()
			a := &c8y.Agent{URL: s.http.URL, Token: "device-token", Status: st}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- a.Serve(ctx, strings.NewReader(kr.Operation+"\n")) }()
			// The operation is a SmartREST 530 line: the agent answers
			// with the static templates.
			st.want(t, "501,c8y_RemoteAccessConnect\n", "503,c8y_RemoteAccessConnect\n")

			if !tt.clientFirst {
				connect()
			}
			if !tt.clientFirst || tt.dial {
				if err := <-clientUp; err != nil {
					t.Fatal(err)
				}
			}
			echoes(t, client)

			// The key is spent: neither a second client nor a second
			// device gets in.
			if c, err := clientWS(s, kr.Key); err == nil {
				c.Close()
				t.Error("a second client got in with a used key")
			}
			if _, err := rtcp.Dial(s.dpAddr, kr.Name); err == nil {
				t.Error("a second rtcp.Dial got in with a used key")
			}
			d := &wsconn.Dialer{Subprotocol: wire.Subprotocol}
			if c, err := d.DialURL(context.Background(), s.http.URL+kr.DevicePath); err == nil {
				c.Close()
				t.Error("a second device got in with a used key")
			}

			client.Close()
			if err := <-served; err != nil {
				t.Fatalf("agent Serve = %v", err)
			}
			// When the tunnel has ended the name is free again.
			if _, err := rtcp.Dial(s.dpAddr, kr.Name); err == nil || !strings.Contains(err.Error(), "no server") {
				t.Errorf("rtcp.Dial after the tunnel = %v, want no server", err)
			}
		})
	}
}

func TestDPDeviceEndpointRefusals(t *testing.T) {
	s := newDP(t, "tok")
	_, op := service(t)
	op.Key = "no-such-key"
	st := newLines()
	a := &c8y.Agent{URL: s.http.URL, Status: st}
	err := wait(t, handle(a, op))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound || !strings.Contains(he.Message, "unknown or expired") {
		t.Fatalf("agent with an unknown key: %v", err)
	}
	st.want(t, "501,c8y_RemoteAccessConnect\n", `502,c8y_RemoteAccessConnect,"c8y: cannot open the remote access WebSocket`)
	if _, err := clientWS(s, "no-such-key"); err == nil {
		t.Error("a client got in with an unknown key")
	}
}

func TestKeysAPI(t *testing.T) {
	s := newDP(t, "tok")
	for _, tt := range []struct {
		name   string
		token  string
		params url.Values
		code   int
		in     string
	}{
		{"no token", "", nil, 401, "Bearer"},
		{"wrong token", "nope", nil, 401, "Bearer"},
		{"plain", "tok", nil, 201, `"device_path":"/service/remoteaccess/device/`},
		{"named", "tok", url.Values{"name": {"plc-4"}, "ttl": {"60"}}, 201, `"name":"plc-4"`},
		{"name taken", "tok", url.Values{"name": {"plc-4"}}, 409, "held by another server"},
		{"bad name", "tok", url.Values{"name": {"a b"}}, 400, "name="},
		{"bad ttl", "tok", url.Values{"ttl": {"0"}}, 400, "ttl="},
		{"ttl too long", "tok", url.Values{"ttl": {"90000"}}, 400, "ttl="},
		{"host without port", "tok", url.Values{"host": {"10.0.0.1"}}, 400, "together"},
		{"bad port", "tok", url.Values{"host": {"10.0.0.1"}, "port": {"70000"}}, 400, "port="},
		{"bad host", "tok", url.Values{"host": {"10.0.0.1:22"}, "port": {"22"}}, 400, "host="},
		{"unknown parameter", "tok", url.Values{"nmae": {"x"}}, 400, "unknown parameter"},
		{"repeated parameter", "tok", url.Values{"name": {"x", "y"}}, 400, "given 2 times"},
		{"operation", "tok", url.Values{"host": {"[::1]"}, "port": {"22"}}, 201, `"operation":"530,`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := s.newKey(t, tt.token, tt.params)
			if code != tt.code || !strings.Contains(body, tt.in) {
				t.Fatalf("answer %d %s, want %d with %q", code, body, tt.code, tt.in)
			}
		})
	}
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", c8y.KeysPath, 405},
		{"GET", "/service/remoteaccess/other", 404},
		{"GET", c8y.DevicePrefix + "a/b", 404},
	} {
		req, _ := http.NewRequest(tt.method, s.http.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !json.Valid(body) {
			t.Errorf("%s %s: %d %s, want %d with a JSON body", tt.method, tt.path, resp.StatusCode, body, tt.code)
		}
	}
}

// Without a token, only loopback clients may create keys.
func TestKeysAPILoopbackOnly(t *testing.T) {
	srv := &c8y.Server{DP: new(rtcp.DiscoverPoint)}
	defer srv.DP.Close()
	defer srv.Close()
	for addr, want := range map[string]int{"127.0.0.1:5000": 201, "[::1]:5000": 201, "192.0.2.7:5000": 401} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", c8y.KeysPath, nil)
		req.RemoteAddr = addr
		srv.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s: %d %s, want %d", addr, rec.Code, rec.Body, want)
		}
	}
}

func TestNewKeyAfterClose(t *testing.T) {
	srv := &c8y.Server{DP: new(rtcp.DiscoverPoint)}
	defer srv.DP.Close()
	srv.Close()
	if _, err := srv.NewKey("", time.Minute); !errors.Is(err, c8y.ErrServerClosed) {
		t.Fatalf("NewKey after Close = %v", err)
	}
	if _, err := (&c8y.Server{}).NewKey("", 0); err == nil {
		t.Fatal("NewKey without a DP succeeded")
	}
}
