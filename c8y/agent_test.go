package c8y_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"rtcp/c8y"
	wire "rtcp/protocol/c8y"
	"rtcp/wsconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "eb5e9d13-1caa-486b-bdda-130ca0d87df8"

// cloud is a fake Cumulocity remote access endpoint: it checks the path,
// the Authorization header and the offered subprotocol, and hands each
// device WebSocket to the test.
type cloud struct {
	srv      *httptest.Server
	auth     string        // the Authorization header it wants
	answer   string        // the subprotocol it answers ("" answers none)
	before   chan struct{} // if not nil, every answer waits until it is closed
	hold     chan struct{} // if not nil, upgrades wait until it is closed
	conns    chan net.Conn
	requests chan *http.Request
}

func newCloud(t *testing.T, auth string) *cloud {
	cl := &cloud{auth: auth, answer: wire.Subprotocol, conns: make(chan net.Conn, 4), requests: make(chan *http.Request, 4)}
	cl.srv = httptest.NewServer(http.HandlerFunc(cl.serve))
	t.Cleanup(cl.srv.Close)
	return cl
}

func (cl *cloud) serve(w http.ResponseWriter, r *http.Request) {
	cl.requests <- r
	if cl.before != nil {
		<-cl.before
	}
	if _, ok := wire.ParseDevicePath(r.URL.EscapedPath()); !ok {
		http.Error(w, "no such endpoint", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != cl.auth {
		http.Error(w, `{"error":"security/Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if !strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), wire.Subprotocol) {
		http.Error(w, "offer the binary subprotocol", http.StatusBadRequest)
		return
	}
	if cl.hold != nil {
		<-cl.hold
	}
	c, err := wsconn.Accept(w, r, cl.answer)
	if err != nil {
		return
	}
	cl.conns <- c
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// lines collects status lines.
type lines struct{ ch chan string }

func newLines() *lines { return &lines{ch: make(chan string, 64)} }

func (l *lines) Write(p []byte) (int, error) {
	l.ch <- string(p)
	return len(p), nil
}

// want reads status lines that start as want says, each one Write with
// "\n". A line that starts with a letter must be a documented text status
// line (StatusText); one that starts with a digit, SmartREST.
func (l *lines) want(t *testing.T, want ...string) (lines []string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-l.ch:
			lines = append(lines, got)
			if !strings.HasPrefix(got, w) || !strings.HasSuffix(got, "\n") {
				t.Fatalf("status line %q, want one starting %q", got, w)
			}
			if got[0] < '0' || got[0] > '9' {
				if _, _, _, err := wire.ParseStatusLine(got); err != nil {
					t.Fatalf("status line %q is not in the documented format: %v", got, err)
				}
			} else if strings.Count(got, "\n") != 1 {
				t.Fatalf("SmartREST status %q is not one line", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no status line, want %q", w)
		}
	}
	return lines
}

// none checks that no status line is waiting.
func (l *lines) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-l.ch:
		t.Fatalf("status line %q, want none", got)
	default:
	}
}

// service is the TCP endpoint on the device's network.
func service(t *testing.T) (net.Listener, wire.Operation) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	return l, wire.Operation{Host: "127.0.0.1", Port: port, Key: testKey}
}

func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, ch chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the agent opened no WebSocket")
		return nil
	}
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func handle(a *c8y.Agent, op wire.Operation) chan error {
	done := make(chan error, 1)
	go func() { done <- a.Handle(context.Background(), op) }()
	return done
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Handle did not return")
		return nil
	}
}

// wantEnd checks that c ends (clean or not) with nothing more on it.
func wantEnd(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("%s: Read = %d, %v; want it ended", what, n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestAgentTunnel(t *testing.T) {
	for _, side := range []string{"cloud closes", "endpoint closes"} {
		t.Run(side, func(t *testing.T) {
			cl := newCloud(t, basic("t123/dev", "s3cret"))
			l, op := service(t)
			st := newLines()
			a := &c8y.Agent{URL: cl.srv.URL, User: "t123/dev", Password: "s3cret", Status: st, StatusFormat: c8y.StatusText}
			done := handle(a, op)
			tcp := accept(t, l)
			ws := recv(t, cl.conns)
			st.want(t, "EXECUTING "+testKey, "SUCCESSFUL "+testKey)
			r := <-cl.requests
			if r.URL.Path != "/service/remoteaccess/device/"+testKey {
				t.Errorf("path %q", r.URL.Path)
			}

			ws.Write([]byte("from the cloud"))
			if got := readN(t, tcp, 14); got != "from the cloud" {
				t.Fatalf("endpoint read %q", got)
			}
			tcp.Write([]byte("from the endpoint"))
			if got := readN(t, ws, 17); got != "from the endpoint" {
				t.Fatalf("cloud read %q", got)
			}
			big := strings.Repeat("x", 1<<20)
			go tcp.Write([]byte(big))
			if got := readN(t, ws, len(big)); got != big {
				t.Fatal("1 MiB arrived changed")
			}

			if side == "cloud closes" {
				ws.Close()
				wantEnd(t, tcp, "endpoint after the cloud closed")
			} else {
				tcp.Close()
				wantEnd(t, ws, "cloud after the endpoint closed")
			}
			if err := wait(t, done); err != nil {
				t.Errorf("Handle = %v, want nil after a clean end", err)
			}
		})
	}
}

func TestAgentBearer(t *testing.T) {
	cl := newCloud(t, "Bearer tok-1")
	l, op := service(t)
	st := newLines()
	a := &c8y.Agent{URL: cl.srv.URL + "/", Token: "tok-1", User: "ignored", Status: st, StatusFormat: c8y.StatusText}
	done := handle(a, op)
	tcp := accept(t, l)
	recv(t, cl.conns).Close()
	st.want(t, "EXECUTING", "SUCCESSFUL")
	wantEnd(t, tcp, "endpoint")
	wait(t, done)
}

func TestAgentFailures(t *testing.T) {
	t.Run("TCP refused", func(t *testing.T) {
		cl := newCloud(t, "Bearer t")
		l, op := service(t)
		l.Close()
		st := newLines()
		// A WebSocket that came up meanwhile is closed again (the cloud
		// reads, and so answers the agent's close).
		stop, drained := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(drained)
			select {
			case ws := <-cl.conns:
				io.Copy(io.Discard, ws)
				ws.Close()
			case <-stop:
			}
		}()
		err := wait(t, handle(&c8y.Agent{URL: cl.srv.URL, Token: "t", Status: st, StatusFormat: c8y.StatusText}, op))
		close(stop)
		<-drained
		if err == nil || !strings.Contains(err.Error(), "cannot connect to the endpoint 127.0.0.1:"+strconv.Itoa(op.Port)) {
			t.Fatalf("Handle = %v", err)
		}
		st.want(t, "EXECUTING "+testKey, "FAILED "+testKey+" c8y: cannot connect to the endpoint")
	})
	t.Run("WebSocket 401", func(t *testing.T) {
		cl := newCloud(t, basic("t123/dev", "right"))
		cl.before = make(chan struct{}) // the refusal comes once the endpoint is up
		l, op := service(t)
		st := newLines()
		done := handle(&c8y.Agent{URL: cl.srv.URL, User: "t123/dev", Password: "wrong", Status: st, StatusFormat: c8y.StatusText}, op)
		tcp := accept(t, l)
		close(cl.before)
		err := wait(t, done)
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != 401 {
			t.Fatalf("Handle = %v, want a 401 HandshakeError", err)
		}
		st.want(t, "EXECUTING", "FAILED "+testKey+" c8y: cannot open the remote access WebSocket: wsconn: ")
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("Handle's error %q shows the connection key", err)
		}
		wantEnd(t, tcp, "endpoint after the WebSocket was refused")
	})
	t.Run("no subprotocol in the answer", func(t *testing.T) {
		cl := newCloud(t, "Bearer t")
		cl.answer = ""
		_, op := service(t)
		st := newLines()
		err := wait(t, handle(&c8y.Agent{URL: cl.srv.URL, Token: "t", Status: st, StatusFormat: c8y.StatusText}, op))
		if err == nil || !strings.Contains(err.Error(), `not "binary"`) {
			t.Fatalf("Handle = %v", err)
		}
		st.want(t, "EXECUTING", "FAILED")
	})
	t.Run("both fail", func(t *testing.T) {
		l, op := service(t)
		l.Close()
		st := newLines()
		err := wait(t, handle(&c8y.Agent{URL: "ws://127.0.0.1:1", Status: st, StatusFormat: c8y.StatusText, ConnectTimeout: 5 * time.Second}, op))
		if err == nil {
			t.Fatal("Handle succeeded")
		}
		st.want(t, "EXECUTING", "FAILED")
	})
	t.Run("bad URL", func(t *testing.T) {
		_, op := service(t)
		for _, u := range []string{"", "ftp://x", "https://", "::"} {
			st := newLines()
			err := wait(t, handle(&c8y.Agent{URL: u, Status: st, StatusFormat: c8y.StatusText}, op))
			if err == nil || !strings.Contains(err.Error(), "URL") {
				t.Errorf("URL %q: Handle = %v", u, err)
			}
			st.want(t, "EXECUTING", "FAILED")
		}
	})
}

// What one side sends while the other is being set up reaches it.
func TestAgentBuffersDuringSetup(t *testing.T) {
	t.Run("endpoint first", func(t *testing.T) {
		cl := newCloud(t, "")
		cl.hold = make(chan struct{})
		l, op := service(t)
		done := handle(&c8y.Agent{URL: cl.srv.URL}, op)
		tcp := accept(t, l)
		// A server that speaks first (SSH, VNC), then hangs up, all before
		// the WebSocket is up.
		tcp.Write([]byte("SSH-2.0-banner\r\n"))
		tcp.Close()
		close(cl.hold)
		ws := recv(t, cl.conns)
		got, err := io.ReadAll(ws)
		if string(got) != "SSH-2.0-banner\r\n" {
			t.Fatalf("cloud read %q, %v; want the banner sent before the WebSocket was up", got, err)
		}
		wait(t, done)
	})
	t.Run("cloud first", func(t *testing.T) {
		cl := newCloud(t, "")
		l, op := service(t)
		gate := make(chan struct{})
		a := &c8y.Agent{URL: cl.srv.URL, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		done := handle(a, op)
		ws := recv(t, cl.conns)
		ws.Write([]byte("client hello"))
		close(gate)
		tcp := accept(t, l)
		if got := readN(t, tcp, 12); got != "client hello" {
			t.Fatalf("endpoint read %q; want what the cloud sent before the TCP connection was up", got)
		}
		ws.Close()
		wait(t, done)
	})
}

func TestAgentServe(t *testing.T) {
	cl := newCloud(t, "Bearer t")
	l, op := service(t)
	st := newLines()
	a := &c8y.Agent{URL: cl.srv.URL, Token: "t", Status: st, StatusFormat: c8y.StatusText}
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- a.Serve(context.Background(), pr) }()

	io.WriteString(pw, "\n510,DeviceSerial\n530,dev,127.0.0.1,70000,k2\n")
	st.want(t, "EXECUTING _", "FAILED _ c8y: port 70000 is out of range")
	io.WriteString(pw, `{"id":"7","c8y_RemoteAccessConnect":{"hostname":"127.0.0.1","port":`+strconv.Itoa(op.Port)+`,"connectionKey":"`+testKey+`"}}`+"\r\n")
	tcp := accept(t, l)
	ws := recv(t, cl.conns)
	st.want(t, "EXECUTING "+testKey, "SUCCESSFUL "+testKey)
	pw.Close()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a tunnel open", err)
	default:
	}
	ws.Write([]byte("hi"))
	if readN(t, tcp, 2) != "hi" {
		t.Fatal("no data")
	}
	tcp.Close()
	wantEnd(t, ws, "cloud") // a WebSocket peer reads, and so answers the close
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v, want nil at the end of the operations", err)
	}
}

// Cancelling Serve's context ends its tunnels.
func TestAgentServeCancel(t *testing.T) {
	cl := newCloud(t, "")
	l, op := service(t)
	a := &c8y.Agent{URL: cl.srv.URL}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- a.Serve(ctx, strings.NewReader("530,,127.0.0.1,"+strconv.Itoa(op.Port)+","+testKey+"\n"))
	}()
	tcp := accept(t, l)
	ws := recv(t, cl.conns)
	cancel()
	wantEnd(t, tcp, "endpoint")
	wantEnd(t, ws, "cloud")
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
}
