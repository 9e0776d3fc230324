package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// readyAttrs returns the attributes of p's ready line (-log-format json).
func readyAttrs(t *testing.T, p *proc, msg string) map[string]any {
	t.Helper()
	for _, m := range records(t, p) {
		if m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no %q line in:\n%s", msg, p.out)
	return nil
}

// records returns the records p has logged so far (-log-format json).
func records(t *testing.T, p *proc) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(p.out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("a line that is not JSON: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// logged reports whether p has logged a record at level (as JSON writes
// it: "WARN") whose message is msg, or any message if msg is empty.
func logged(t *testing.T, p *proc, level, msg string) bool {
	t.Helper()
	return slices.ContainsFunc(records(t, p), func(m map[string]any) bool {
		return m["level"] == level && (msg == "" || m["msg"] == msg)
	})
}

// alohaRecorder is a TCP relay to a DP that records the transport each
// connection's first message, its Aloha, asks for.
type alohaRecorder struct {
	addr string
	mu   sync.Mutex // guards asked
	// asked holds the Transport of each Aloha, in order.
	asked []string
}

func recordAlohas(t *testing.T, dp string) *alohaRecorder {
	t.Helper()
	r := new(alohaRecorder)
	r.addr = relayTo(t, "127.0.0.1:0", dp, func(from io.Reader) {
		m, err := plan5.NewReader(from, plan5.DefaultMaxLine).ReadMessage()
		if a, ok := m.(*plan5.Aloha); ok && err == nil {
			r.mu.Lock()
			r.asked = append(r.asked, a.Transport)
			r.mu.Unlock()
		}
		io.Copy(io.Discard, from)
	})
	return r
}

// TestDefaultTransportFastest: against a DP that offers every transport,
// expose without -transport serves on tcp, and connect asks for the raw
// client leg; -transport still decides when given.
func TestDefaultTransportFastest(t *testing.T) {
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0").addr
	echo := startEchoUntilClose(t, "127.0.0.1:0")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"fast", nil, "tcp"},
		{"chosen", []string{"-transport", "json"}, "json"},
		{"yamux", []string{"-transport", "yamux"}, "yamux"},
	} {
		args := append([]string{"-dp", dp, "-name", tt.name, "-to", echo, "-log-format", "json"}, tt.args...)
		p := mustLaunch(t, runExpose, args...)
		if got := readyAttrs(t, p, "rtcp expose: serving")["transport"]; got != tt.want {
			t.Errorf("expose %q: serving on %v, want %s", tt.args, got, tt.want)
		}
	}
	rec := recordAlohas(t, dp)
	c := mustLaunch(t, runConnect, "-dp", rec.addr, "-name", "fast", "-listen", "127.0.0.1:0")
	echoVia(t, tcpDial(c.addr), []byte("the fast way"))
	c = mustLaunch(t, runConnect, "-dp", rec.addr, "-name", "fast", "-listen", "127.0.0.1:0", "-transport", "json")
	echoVia(t, tcpDial(c.addr), []byte("the JSON way"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.asked) != 2 || rec.asked[0] != "raw" || rec.asked[1] != "" {
		t.Errorf("connect asked for transports %q, want the raw leg by default and none with -transport json", rec.asked)
	}
}

// plainDP is a Plan5 DP as the seed wrote it: it answers every Aloha with
// its own, which offers nothing (no Transport). On a server link it opens
// one session, sends "ping" and wants it back; to a client it answers its
// Connect and echoes its first Data.
type plainDP struct {
	addr string
	mu   sync.Mutex // guards asked
	// asked holds the Transport each server link asked for, in order.
	asked []string
	done  chan error // the session's outcome, once
}

func startPlainDP(t *testing.T) *plainDP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &plainDP{addr: l.Addr().String(), done: make(chan error, 2)}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *plainDP) serve(c net.Conn) {
	r := plan5.NewReader(c, plan5.DefaultMaxLine)
	m, err := r.ReadMessage()
	a, ok := m.(*plan5.Aloha)
	if err != nil || !ok {
		return
	}
	if a.R == plan5.RoleIS {
		// Before the answer: the server's next attempt may come as soon
		// as it has read it, and its Aloha must be recorded after this one.
		p.mu.Lock()
		p.asked = append(p.asked, a.Transport)
		p.mu.Unlock()
	}
	if err := plan5link.WriteMessage(c, &plan5.Aloha{V: 10000, R: plan5.RoleDP, N: "plain"}, 0); err != nil {
		return
	}
	switch a.R {
	case plan5.RoleIS:
		if a.Transport != "" {
			return // the server goes away: it wanted another transport
		}
		p.done <- p.session(c, r)
	case plan5.RoleIC:
		p.done <- p.echo(c, r)
	}
	// Read on, as a DP does, until the peer has gone.
	for {
		if _, err := r.ReadMessage(); err != nil {
			c.Close()
			return
		}
	}
}

// session opens a session on a server link, sends "ping" and wants it
// back.
func (p *plainDP) session(c net.Conn, r *plan5.Reader) error {
	if err := plan5link.WriteMessage(c, &plan5.Connect{N: "client"}, 0); err != nil {
		return err
	}
	var x int64 = -1
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *plan5.Ack:
			if m.X < 0 {
				return errors.New("the server refused the session: " + m.R)
			}
			x = m.X
			if err := plan5link.WriteMessage(c, &plan5.Data{X: x, C: []byte("ping")}, 0); err != nil {
				return err
			}
		case *plan5.Data:
			if m.X == x && string(m.C) == "ping" {
				return nil
			}
		}
	}
}

// echo answers a client's Connect, echoes its first Data and closes the
// session.
func (p *plainDP) echo(c net.Conn, r *plan5.Reader) error {
	const x = 5
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *plan5.Connect:
			if err := plan5link.WriteMessage(c, &plan5.Ack{X: x}, 0); err != nil {
				return err
			}
		case *plan5.Data:
			return plan5link.WriteMessages(c, 0, &plan5.Data{X: x, C: m.C}, &plan5.Close{X: x, R: "closed"})
		}
	}
}

// TestDefaultTransportPlainDP: against a plain Plan5 DP, which offers no
// transport, expose without -transport falls back to json and carries a
// session, and connect's session works as JSON.
func TestDefaultTransportPlainDP(t *testing.T) {
	dp := startPlainDP(t)
	echo := startEchoUntilClose(t, "127.0.0.1:0")
	p := mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "old", "-to", echo, "-log-format", "json")
	if got := readyAttrs(t, p, "rtcp expose: serving")["transport"]; got != "json" {
		t.Errorf("expose to a plain DP: serving on %v, want json", got)
	}
	if err := <-dp.done; err != nil {
		t.Errorf("the session through the plain DP: %v", err)
	}
	dp.mu.Lock()
	if got := strings.Join(dp.asked, ","); got != "tcp,yamux," {
		t.Errorf("expose asked the plain DP for %q, want tcp, yamux, then none", got)
	}
	dp.mu.Unlock()

	var stdout, stderr bytes.Buffer
	err := connect(t.Context(), []string{"-stdio", "-dp", dp.addr, "-name", "old"}, strings.NewReader("hello"), &stdout, &stderr)
	if err != nil || stdout.String() != "hello" {
		t.Errorf("connect -stdio through a plain DP: %v, %q; want hello back", err, stdout.String())
	}
	if err := <-dp.done; err != nil {
		t.Errorf("the client session at the plain DP: %v", err)
	}
}
