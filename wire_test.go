package rtcp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp/protocol/plan5"
)

// wireTimeout bounds each raw read, so that a DP that never answers fails
// the test instead of hanging it. Nothing waits for it to pass.
const wireTimeout = 10 * time.Second

// runDP serves dp on a fresh 127.0.0.1 port until the test ends.
func runDP(t testing.TB, dp *DiscoverPoint) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	t.Cleanup(func() {
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("Serve returned %v, want ErrDiscoverPointClosed", err)
		}
	})
	return l.Addr().String()
}

// serveEcho accepts sessions on l and echoes each until its peer is done.
func serveEcho(t testing.TB, l net.Listener) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
}

// healthy is a session that lives through a whole test, to show that bad
// input elsewhere on the DP leaves it alone.
type healthy struct {
	c net.Conn
	n int
}

func newHealthy(t *testing.T, dp string) *healthy {
	t.Helper()
	lc := ListenConfig{}
	l, err := lc.Listen(context.Background(), dp, "healthy")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, l)
	c, err := Dial(dp, "healthy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &healthy{c: c}
	h.check(t)
	return h
}

// check sends a message through the healthy session and reads it back.
func (h *healthy) check(t *testing.T) {
	t.Helper()
	h.n++
	msg := fmt.Sprintf("still alive %d", h.n)
	h.c.SetDeadline(time.Now().Add(wireTimeout))
	defer h.c.SetDeadline(time.Time{})
	if _, err := h.c.Write([]byte(msg)); err != nil {
		t.Fatalf("healthy session: Write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(h.c, buf); err != nil || string(buf) != msg {
		t.Fatalf("healthy session: read %q, %v; want %q", buf, err, msg)
	}
}

// rawPeer speaks bytes to a DP, and reads its answers with the codec.
type rawPeer struct {
	t *testing.T
	c net.Conn
	r *plan5.Reader
}

func dialRaw(t *testing.T, dp string) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, c: c, r: plan5.NewReader(c, plan5.DefaultMaxLine)}
}

func (p *rawPeer) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatalf("raw write: %v", err)
	}
}

func (p *rawPeer) sendMsg(m plan5.Message) { p.t.Helper(); p.send(string(plan5.AppendMessage(nil, m))) }

func (p *rawPeer) read() plan5.Message {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(wireTimeout))
	m, err := p.r.ReadMessage()
	if err != nil {
		p.t.Fatalf("reading the DP's answer: %v", err)
	}
	return m
}

// hello does a plain Aloha exchange with role r and returns the DP's Aloha.
func (p *rawPeer) hello(r plan5.Role, name string) *plan5.Aloha {
	p.t.Helper()
	p.sendMsg(&plan5.Aloha{V: plan5.Version, R: r, N: name})
	a, ok := p.read().(*plan5.Aloha)
	if !ok || a.R != plan5.RoleDP || a.Error != "" {
		p.t.Fatalf("DP answered the Aloha with %+v", a)
	}
	return a
}

// expectEnd checks that the DP closed the connection after its answer.
func (p *rawPeer) expectEnd() {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(wireTimeout))
	if m, err := p.r.ReadMessage(); err != io.EOF {
		p.t.Fatalf("after its answer the DP sent %#v, %v; want the connection closed (io.EOF)", m, err)
	}
}

// TestDPBadInput: each kind of bad input gets a clear answer and ends only
// the offending connection or session; a healthy session through the same
// DP keeps echoing after every case.
func TestDPBadInput(t *testing.T) {
	// A small line cap, so an oversized line is read whole: a DP that
	// closes with unread bytes would reset the connection and lose its
	// answer.
	dp := runDP(t, &DiscoverPoint{MaxLine: 2048})
	h := newHealthy(t, dp)

	// refused expects an Aloha with an Error containing each of want, then
	// the end of the connection.
	refused := func(p *rawPeer, role plan5.Role, want ...string) {
		p.t.Helper()
		a, ok := p.read().(*plan5.Aloha)
		if !ok {
			p.t.Fatalf("DP answered with %T, want an Aloha that refuses", a)
		}
		if a.R != role || a.Error == "" || a.V != plan5.Version {
			p.t.Fatalf("DP answered %+v, want an Aloha V=%d R=%d with an Error", a, plan5.Version, role)
		}
		for _, w := range want {
			if !strings.Contains(a.Error, w) {
				p.t.Errorf("refusal %q does not say %q", a.Error, w)
			}
		}
		p.expectEnd()
	}
	// linkClosed expects a Close of the whole connection (X=-1) giving a
	// reason that contains each of want, then the end of the connection.
	linkClosed := func(p *rawPeer, want ...string) {
		p.t.Helper()
		c, ok := p.read().(*plan5.Close)
		if !ok || c.X != -1 || c.R == "" {
			p.t.Fatalf("DP answered with %+v, want Close X=-1 with a reason", c)
		}
		for _, w := range want {
			if !strings.Contains(c.R, w) {
				p.t.Errorf("reason %q does not say %q", c.R, w)
			}
		}
		p.expectEnd()
	}

	tests := []struct {
		name string
		run  func(p *rawPeer)
	}{
		{"bad JSON in the Aloha", func(p *rawPeer) {
			p.send("0\n{\"V\":10000,\"R\":3,\n")
			refused(p, plan5.RoleDP, "bad handshake", "bad JSON")
		}},
		{"Aloha not an object", func(p *rawPeer) {
			p.send("0\n[10000,3]\n")
			refused(p, plan5.RoleDP, "bad handshake", "not a JSON object")
		}},
		{"unknown type digit first", func(p *rawPeer) {
			p.send("7\n{}\n")
			refused(p, plan5.RoleDP, "bad handshake", "type line", `"7"`)
		}},
		{"first message not an Aloha", func(p *rawPeer) {
			p.send("1\n{\"N\":\"healthy\"}\n")
			refused(p, plan5.RoleDP, "expected Aloha", "Connect")
		}},
		{"CR LF line ends", func(p *rawPeer) {
			p.send("0\r\n{\"V\":10000,\"R\":3,\"N\":\"\"}\r\n")
			refused(p, plan5.RoleDP, "type line")
		}},
		{"wrong role DP", func(p *rawPeer) {
			p.sendMsg(&plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: "another-dp"})
			refused(p, plan5.RoleDP, "role DP", "R=2", "R=3")
		}},
		{"wrong role DS", func(p *rawPeer) {
			p.send("0\n{\"V\":10000,\"R\":0,\"N\":\"x\"}\n")
			refused(p, plan5.RoleDP, "role DS")
		}},
		{"incompatible version", func(p *rawPeer) {
			p.send("0\n{\"V\":112,\"R\":3,\"N\":\"old\"}\n")
			refused(p, plan5.RoleAbortVersion, "112", "not compatible")
		}},
		{"version too new", func(p *rawPeer) {
			p.send("0\n{\"V\":20000,\"R\":2,\"N\":\"new\"}\n")
			refused(p, plan5.RoleAbortVersion, "20000")
		}},
		{"MaxLine below the minimum", func(p *rawPeer) {
			p.sendMsg(&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, MaxLine: 100})
			refused(p, plan5.RoleDP, "MaxLine 100")
		}},
		{"server without a name", func(p *rawPeer) {
			p.send("0\n{\"V\":10000,\"R\":2,\"N\":\"\"}\n")
			refused(p, plan5.RoleDP, "name")
		}},
		{"name already served", func(p *rawPeer) {
			p.sendMsg(&plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "healthy"})
			refused(p, plan5.RoleDP, `"healthy"`, "already served")
		}},
		{"oversized line in the handshake", func(p *rawPeer) {
			p.send("0\n{\"V\":10000,\"R\":3,\"N\":\"" + strings.Repeat("n", 3000) + "\"}\n")
			refused(p, plan5.RoleDP, "line too long", "2048")
		}},
		{"Connect to an unknown name", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.sendMsg(&plan5.Connect{N: "nobody-here"})
			ack, ok := p.read().(*plan5.Ack)
			if !ok || ack.X != -1 || !strings.Contains(ack.R, `"nobody-here"`) || !strings.Contains(ack.R, "no server") {
				t.Fatalf("answer to Connect(nobody-here): %+v, want Ack X=-1 naming the server", ack)
			}
			p.expectEnd()
		}},
		{"bad JSON after the handshake", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.send("1\n{\"N\":healthy}\n")
			linkClosed(p, "protocol error", "bad JSON", "Connect")
		}},
		{"unknown type digit after the handshake", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.send("8\n{\"X\":1}\n")
			linkClosed(p, "protocol error", `"8"`)
		}},
		{"wrong JSON type after the handshake", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.send("3\n{\"X\":\"one\",\"C\":\"\"}\n")
			linkClosed(p, "protocol error", "Data")
		}},
		{"oversized line after the handshake", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.sendMsg(&plan5.Data{X: 1, C: make([]byte, 3000)})
			linkClosed(p, "protocol error", "line too long", "2048")
		}},
		{"Ack from a client", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.sendMsg(&plan5.Ack{X: 1})
			linkClosed(p, "protocol error", "Ack")
		}},
		{"Data before Connect, then a good session", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.sendMsg(&plan5.Data{X: 1, C: []byte("too early")})
			c, ok := p.read().(*plan5.Close)
			if !ok || c.X != 1 || !strings.Contains(c.R, "no session 1") {
				t.Fatalf("answer to Data before Connect: %+v, want Close X=1 with a reason", c)
			}
			// Only that session number was refused: the connection works.
			p.sendMsg(&plan5.Connect{N: "healthy"})
			ack, ok := p.read().(*plan5.Ack)
			if !ok || ack.X < 0 {
				t.Fatalf("Connect after the refused Data: %+v", ack)
			}
			p.sendMsg(&plan5.Data{X: ack.X, C: []byte("echo me")})
			d, ok := p.read().(*plan5.Data)
			if !ok || d.X != ack.X || string(d.C) != "echo me" {
				t.Fatalf("echo: %+v", d)
			}
			// Data for a session number that was never given.
			p.sendMsg(&plan5.Data{X: ack.X + 98, C: []byte("lost")})
			c, ok = p.read().(*plan5.Close)
			if !ok || c.X != ack.X+98 || !c.Abort || !strings.Contains(c.R, fmt.Sprint("no session ", ack.X+98)) {
				t.Fatalf("answer to Data for an unknown X: %+v", c)
			}
			// The open session is untouched.
			p.sendMsg(&plan5.Data{X: ack.X, C: []byte("again")})
			if d, ok := p.read().(*plan5.Data); !ok || string(d.C) != "again" {
				t.Fatalf("echo after the unknown X: %+v", d)
			}
			p.sendMsg(&plan5.Close{X: ack.X, R: "done"})
		}},
		{"Close of the whole connection by the client", func(p *rawPeer) {
			p.hello(plan5.RoleIC, "")
			p.sendMsg(&plan5.Close{X: -1, R: "going away"})
			p.expectEnd()
		}},
		{"bad JSON on a server link", func(p *rawPeer) {
			p.hello(plan5.RoleIS, "raw-server")
			p.send("2\n{\"X\":\n")
			linkClosed(p, "protocol error", `server "raw-server"`, "bad JSON")
		}},
		{"Data for an unknown X on a server link", func(p *rawPeer) {
			p.hello(plan5.RoleIS, "raw-server-2")
			p.sendMsg(&plan5.Data{X: 5, C: []byte("who?")})
			c, ok := p.read().(*plan5.Close)
			if !ok || c.X != 5 || !strings.Contains(c.R, "no session 5") {
				t.Fatalf("answer: %+v, want Close X=5 with a reason", c)
			}
			// The link is still up: it serves a client.
			ic := dialRaw(t, dp)
			ic.hello(plan5.RoleIC, "")
			ic.sendMsg(&plan5.Connect{N: "raw-server-2"})
			conn, ok := p.read().(*plan5.Connect)
			if !ok {
				t.Fatalf("server link got %T, want the Connect", conn)
			}
			p.sendMsg(&plan5.Ack{X: 5})
			if ack, ok := ic.read().(*plan5.Ack); !ok || ack.X < 0 {
				t.Fatalf("client got %+v, want an Ack", ack)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(dialRaw(t, dp))
			h.check(t)
		})
	}
}

// plainLine reads one message as a plain peer does: a type line and a JSON
// line, decoded with encoding/json alone. It fails the test if a line is
// longer than a plain peer's 4096-byte buffer.
func plainLine(t *testing.T, br *bufio.Reader) (byte, map[string]any) {
	t.Helper()
	tl, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("plain peer: reading a type line: %v", err)
	}
	body, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("plain peer: reading a body: %v", err)
	}
	if len(tl) != 2 || len(body)-1 > plan5.PlainMaxLine {
		t.Fatalf("plain peer got a type line %q and a body of %d bytes (cap %d)", tl, len(body)-1, plan5.PlainMaxLine)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("plain peer: %v in %q", err, body)
	}
	return tl[0], m
}

// TestPlainServer: a peer that speaks only the seed (no extensions, its
// own JSON writer) serves an rtcp.Dial client through the DP.
func TestPlainServer(t *testing.T) {
	dp := runDP(t, new(DiscoverPoint))
	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "0\n{\"V\":10000,\"R\":2,\"N\":\"plain\"}\n")
	if typ, m := plainLine(t, br); typ != '0' || m["R"] != float64(4) || m["V"] != float64(10000) {
		t.Fatalf("DP answered %c %v, want an Aloha V=10000 R=4", typ, m)
	}

	// The plain server: answer each Connect with an Ack (X of its own
	// choosing), echo Data, and report what it saw.
	type seen struct {
		connects []map[string]any
		maxChunk int
		closed   []float64
		badKeys  []string
	}
	result := make(chan seen, 1)
	go func() {
		var s seen
		defer func() { result <- s }()
		x := 100.0
		for {
			tl, err := br.ReadString('\n')
			if err != nil {
				return
			}
			body, err := br.ReadString('\n')
			if err != nil || len(body)-1 > plan5.PlainMaxLine {
				s.badKeys = append(s.badKeys, fmt.Sprintf("line of %d bytes (%v)", len(body)-1, err))
				return
			}
			var m map[string]any
			json.Unmarshal([]byte(body), &m)
			for _, k := range []string{"Window", "Half"} {
				if _, ok := m[k]; ok {
					s.badKeys = append(s.badKeys, k)
				}
			}
			switch tl {
			case "1\n":
				s.connects = append(s.connects, m)
				x++
				fmt.Fprintf(c, "2\n{\"X\":%d,\"R\":\"\"}\n", int(x))
			case "3\n":
				b, _ := base64.StdEncoding.DecodeString(m["C"].(string))
				s.maxChunk = max(s.maxChunk, len(b))
				fmt.Fprintf(c, "3\n{\"C\":\"%s\",\"X\":%v}\n", m["C"], m["X"])
			case "4\n":
				s.closed = append(s.closed, m["X"].(float64))
				return
			}
		}
	}()

	d := Dialer{Name: "tester"}
	conn, err := d.DialContext(context.Background(), dp, "plain")
	if err != nil {
		t.Fatal(err)
	}
	// 200 KB: less than the 256 KiB a session may buffer toward a peer
	// without flow control, however the goroutines are scheduled.
	msg := []byte(strings.Repeat("0123456789abcdef", 12800))
	go conn.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo through the plain server: %d bytes, %v", len(got), err)
	}
	conn.Close()
	s := <-result
	if len(s.connects) != 1 || s.connects[0]["N"] != "tester" {
		t.Errorf("plain server saw Connects %v, want one with N=tester (the client's name)", s.connects)
	}
	if s.maxChunk == 0 || s.maxChunk > plan5.ChunkSize(plan5.PlainMaxLine) {
		t.Errorf("largest Data to the plain server: %d bytes, want 1..%d", s.maxChunk, plan5.ChunkSize(plan5.PlainMaxLine))
	}
	if len(s.closed) != 1 || s.closed[0] != 101 {
		t.Errorf("plain server saw Close of %v, want its session 101", s.closed)
	}
	if len(s.badKeys) != 0 {
		t.Errorf("the DP sent a plain server what it did not negotiate: %v", s.badKeys)
	}
}

// TestPlainClient: a peer that speaks only the seed reaches an rtcp
// Listener through the DP.
func TestPlainClient(t *testing.T) {
	dp := runDP(t, new(DiscoverPoint))
	lc := ListenConfig{}
	l, err := lc.Listen(context.Background(), dp, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type accepted struct {
		remote string
		got    []byte
		err    error
	}
	done := make(chan accepted, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			done <- accepted{err: err}
			return
		}
		defer s.Close()
		// Echo until the client's Close, which must read as io.EOF.
		var got []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if n > 0 {
				s.Write(buf[:n])
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- accepted{remote: s.RemoteAddr().String(), got: got, err: err}
				return
			}
		}
	}()

	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "0\n{\"V\":10000,\"R\":3,\"N\":\"plain-client\"}\n")
	if typ, m := plainLine(t, br); typ != '0' || m["R"] != float64(4) {
		t.Fatalf("DP answered %c %v, want an Aloha R=4", typ, m)
	}
	io.WriteString(c, "1\n{\"N\":\"svc\"}\n")
	typ, m := plainLine(t, br)
	x, _ := m["X"].(float64)
	if typ != '2' || x < 0 {
		t.Fatalf("DP answered Connect with %c %v, want an Ack", typ, m)
	}

	// 30 KB in Data of 3000 bytes, the way a plain peer chunks.
	want := []byte(strings.Repeat("plain peer says hello. ", 1400))[:30000]
	for i := 0; i < len(want); i += 3000 {
		fmt.Fprintf(c, "3\n{\"X\":%d,\"C\":\"%s\"}\n", int(x), base64.StdEncoding.EncodeToString(want[i:i+3000]))
	}
	var echoed []byte
	for len(echoed) < len(want) {
		typ, m := plainLine(t, br)
		if typ != '3' || m["X"] != x {
			t.Fatalf("got %c %v, want Data for X=%v", typ, m, x)
		}
		if _, ok := m["Window"]; ok {
			t.Fatalf("DP granted credit to a plain client: %v", m)
		}
		b, err := base64.StdEncoding.DecodeString(m["C"].(string))
		if err != nil {
			t.Fatal(err)
		}
		echoed = append(echoed, b...)
	}
	if string(echoed) != string(want) {
		t.Fatalf("echo differs: %d bytes", len(echoed))
	}
	fmt.Fprintf(c, "4\n{\"X\":%d,\"R\":\"bye\"}\n", int(x))
	a := <-done
	if a.err != nil || string(a.got) != string(want) {
		t.Fatalf("server read %d bytes, then %v; want %d bytes, then io.EOF", len(a.got), a.err, len(want))
	}
	if !strings.HasPrefix(a.remote, "plain-client@127.0.0.1:") {
		t.Errorf("server sees the client as %q, want plain-client@127.0.0.1:port", a.remote)
	}
}

// TestSecondConnect: a client connection carries one session; a second
// Connect on it is refused with a reason, and the first session goes on.
func TestSecondConnect(t *testing.T) {
	dp := runDP(t, new(DiscoverPoint))
	h := newHealthy(t, dp) // "healthy" echoes
	p := dialRaw(t, dp)
	p.hello(plan5.RoleIC, "twice")
	p.sendMsg(&plan5.Connect{N: "healthy"})
	ack, ok := p.read().(*plan5.Ack)
	if !ok || ack.X < 0 {
		t.Fatalf("first Connect answered with %+v", ack)
	}
	p.sendMsg(&plan5.Connect{N: "healthy"})
	p.sendMsg(&plan5.Data{X: ack.X, C: []byte("ping")})
	sawRefusal, sawEcho := false, false
	for !sawRefusal || !sawEcho {
		switch m := p.read().(type) {
		case *plan5.Ack:
			if m.X >= 0 || !strings.Contains(m.R, "one session") {
				t.Fatalf("second Connect answered with %+v, want a refusal saying one session per connection", m)
			}
			sawRefusal = true
		case *plan5.Data:
			if m.X != ack.X || string(m.C) != "ping" {
				t.Fatalf("first session echoed %+v", m)
			}
			sawEcho = true
		case *plan5.Close:
			t.Fatalf("the DP closed the connection: %+v", m)
		}
	}
	h.check(t)
}
