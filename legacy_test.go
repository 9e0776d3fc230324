package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// Plan5's own code, as SEEDS.md section 6 describes it and its source
// (rtcp's message file of the Plan5 repository) shows: it sends V=113 and
// "HeartBeat":0 in its Aloha, writes each message with four writes (the
// type digit, "\n", the JSON, "\n"), and reads each message with a new
// bufio.Scanner over a 4106-byte buffer, so whatever the read that
// brought a message also brought after it is lost with that scanner.
// legacyPeer is that code, rewritten for the tests.

// legacyBuffer is the original's SafeMessageBufferSize: MaxMessageLength
// (4096) + 10.
const legacyBuffer = 4096 + 10

// The original's message bodies, with its field names and types.
type (
	legacyAloha struct {
		V, R      int
		N         string
		HeartBeat int
	}
	legacyConnect struct{ N string }
	legacyAck     struct {
		X int
		R string
	}
	legacyData struct {
		X int
		C []byte
	}
	legacyClose struct {
		X int
		R string
	}
)

// errBroken is the original's "Broken protocol.": a scanner began in the
// middle of a message, because the one before it took the message's start.
var errBroken = errors.New("legacy peer: broken protocol")

type legacyPeer struct {
	t       testing.TB
	c       net.Conn
	v       int    // the version it announces: 0 is Plan5's own, 113
	dropped []byte // what the last recv read past its message, and lost
}

// teeReader keeps what it reads.
type teeReader struct {
	r   io.Reader
	got []byte
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.got = append(t.got, p[:n]...)
	return n, err
}

func dialLegacy(t testing.TB, dp string) *legacyPeer {
	t.Helper()
	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &legacyPeer{t: t, c: c}
}

// send writes a message as the original's RMessageSend does: four writes.
func (p *legacyPeer) send(m any) error {
	var typ byte
	switch m.(type) {
	case *legacyAloha:
		typ = '0'
	case *legacyConnect:
		typ = '1'
	case *legacyAck:
		typ = '2'
	case *legacyData:
		typ = '3'
	case *legacyClose:
		typ = '4'
	default:
		panic(fmt.Sprintf("not a legacy message: %T", m))
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(body) > 4096 {
		return errors.New("legacy peer: the message is too long")
	}
	for _, b := range [][]byte{{typ}, {'\n'}, body, {'\n'}} {
		if _, err := p.c.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (p *legacyPeer) mustSend(m any) {
	p.t.Helper()
	if err := p.send(m); err != nil {
		p.t.Fatalf("legacy peer: %v", err)
	}
}

// recv reads a message as the original's RMessageRcvX does: a new scanner
// for each message, and what it read past the message gone with it. It
// keeps in p.dropped what it lost that way.
func (p *legacyPeer) recv() (any, error) {
	p.c.SetReadDeadline(time.Now().Add(wireTimeout))
	tee := &teeReader{r: p.c}
	sc := bufio.NewScanner(tee)
	sc.Buffer(make([]byte, legacyBuffer), legacyBuffer)
	m, n, err := scanLegacy(sc)
	p.dropped = nil
	if err == nil && n < len(tee.got) {
		p.dropped = tee.got[n:]
	}
	return m, err
}

// scanLegacy is the body of the original's RMessageRcvX. n is the length
// of the message on the wire.
func scanLegacy(sc *bufio.Scanner) (m any, n int, err error) {
	sc.Scan()
	typ := sc.Bytes()
	if len(typ) != 1 {
		if err := sc.Err(); err != nil {
			return nil, 0, err
		}
		if len(typ) == 0 {
			return nil, 0, io.EOF
		}
		return nil, 0, errBroken
	}
	t := typ[0]
	sc.Scan()
	body := sc.Bytes()
	switch t {
	case '0':
		m = new(legacyAloha)
	case '1':
		m = new(legacyConnect)
	case '2':
		m = new(legacyAck)
	case '3':
		m = new(legacyData)
	case '4':
		m = new(legacyClose)
	default:
		return nil, 0, fmt.Errorf("legacy peer: invalid message type %q", t)
	}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, 0, fmt.Errorf("legacy peer: %w", err)
	}
	return m, len("0\n") + len(body) + len("\n"), nil
}

// expect reads the next message, which must be a T.
func expect[T any](p *legacyPeer) *T {
	p.t.Helper()
	m, err := p.recv()
	if err != nil {
		p.t.Fatalf("legacy peer: %v", err)
	}
	v, ok := m.(*T)
	if !ok {
		p.t.Fatalf("legacy peer got %#v, want a %T", m, v)
	}
	if len(p.dropped) > 0 {
		p.t.Fatalf("legacy peer: the read that brought a %T brought %q after it, which Plan5's reader loses", v, p.dropped)
	}
	return v
}

// hello sends the original's Aloha in role r and checks the DP's answer.
func (p *legacyPeer) hello(r plan5.Role, name string) {
	p.t.Helper()
	v := p.v
	if v == 0 {
		v = plan5.LegacyVersion
	}
	p.mustSend(&legacyAloha{V: v, R: int(r), N: name})
	a := expect[legacyAloha](p)
	if a.R != int(plan5.RoleDP) || a.V != v {
		p.t.Fatalf("the DP answered Plan5's Aloha (V=%d) with %+v; want R=4 in the same version", v, a)
	}
}

// TestLegacyServer: Plan5's own code as an indirect server, from its V=113
// Aloha on, serves rtcp clients of both client transports through a DP.
func TestLegacyServer(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		t.Run(tr.String(), func(t *testing.T) {
			dp := runDP(t, new(DiscoverPoint))
			srv := dialLegacy(t, dp)
			srv.hello(plan5.RoleIS, "legacy")

			dialed := make(chan net.Conn, 1)
			go func() {
				d := Dialer{Name: "alice", Transport: tr}
				c, err := d.DialContext(context.Background(), dp, "legacy")
				if err != nil {
					t.Errorf("Dial: %v", err)
				}
				dialed <- c
			}()
			if cm := expect[legacyConnect](srv); cm.N != "alice" {
				t.Errorf("the legacy server got Connect %+v, want N=alice", cm)
			}
			srv.mustSend(&legacyAck{X: 7})
			c := <-dialed
			if c == nil {
				t.FailNow()
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(wireTimeout))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if d := expect[legacyData](srv); d.X != 7 || string(d.C) != "ping" {
				t.Fatalf("the legacy server got %+v, want Data X=7 ping", d)
			}
			srv.mustSend(&legacyData{X: 7, C: []byte("pong")})
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("the client read %q, %v; want pong", buf, err)
			}
			c.Close()
			if cl := expect[legacyClose](srv); cl.X != 7 {
				t.Errorf("the legacy server got %+v, want Close X=7", cl)
			}
		})
	}
}

// TestLegacyClient: Plan5's own code as an indirect client, from its V=113
// Aloha on, reaches an rtcp server of each transport through a DP.
func TestLegacyClient(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			dp := runDP(t, new(DiscoverPoint))
			echo(t, listen(t, &ListenConfig{Transport: tr}, dp, "echo"))
			cl := dialLegacy(t, dp)
			cl.hello(plan5.RoleIC, "legacy-client")
			cl.mustSend(&legacyConnect{N: "echo"})
			ack := expect[legacyAck](cl)
			if ack.X < 0 {
				t.Fatalf("the DP refused the legacy client: %+v", ack)
			}
			for _, msg := range []string{"ping", "pong"} {
				cl.mustSend(&legacyData{X: ack.X, C: []byte(msg)})
				if d := expect[legacyData](cl); d.X != ack.X || string(d.C) != msg {
					t.Fatalf("the legacy client got %+v, want Data X=%d %s", d, ack.X, msg)
				}
			}
			cl.mustSend(&legacyClose{X: ack.X, R: "bye"})
		})
	}
}

// recListener records every write the DP makes on the connections it
// accepts, by the peer's address.
type recListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]*recConn
}

type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []recWrite
}

type recWrite struct {
	b  []byte
	at time.Time
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recConn{Conn: c}
	l.mu.Lock()
	l.conns[c.RemoteAddr().String()] = rc
	l.mu.Unlock()
	return rc, nil
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, recWrite{bytes.Clone(p), time.Now()})
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// writesTo returns what the DP wrote to the peer at local, write by write.
func (l *recListener) writesTo(local net.Addr) []recWrite {
	l.mu.Lock()
	c := l.conns[local.String()]
	l.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// legacyLine is the longest Data line the DP writes to a legacy peer.
var legacyLine = len(plan5.AppendMessage(nil, &plan5.Data{X: math.MinInt64, C: make([]byte, plan5link.LegacyChunkSize)})) - len("3\n\n")

// checkOnePerWrite checks that each write holds exactly one message, each
// Data line is at most legacyLine bytes, and each write after the first
// message that follows the Aloha comes LegacyGap after the one before; it
// returns the Data bytes.
func checkOnePerWrite(t *testing.T, writes []recWrite) (data int) {
	t.Helper()
	for i, rw := range writes {
		w := rw.b
		if gap := rw.at.Sub(writes[max(i-1, 0)].at); i > 1 && gap < plan5link.LegacyGap {
			t.Fatalf("write %d of the DP came %v after the one before, want at least %v", i, gap, plan5link.LegacyGap)
		}
		br := bytes.NewReader(w)
		r := plan5.NewReader(br, plan5.DefaultMaxLine)
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("write %d of the DP (%d bytes) does not start with a whole message: %v", i, len(w), err)
		}
		if rest := r.Buffered().Buffered() + br.Len(); rest > 0 {
			t.Fatalf("write %d of the DP holds a %v and %d bytes more; want one message per write", i, m.Type(), rest)
		}
		if d, ok := m.(*plan5.Data); ok {
			data += len(d.C)
			if line := bytes.IndexByte(w[2:], '\n'); line > legacyLine {
				t.Fatalf("write %d of the DP: a Data line of %d bytes, want at most %d", i, line, legacyLine)
			}
		}
	}
	return data
}

// TestLegacyOneMessagePerWrite: toward a peer that announced the legacy
// version the DP writes one message per write, LegacyGap apart, Data of
// at most LegacyChunkSize, as a server's link and as a client's
// connection, when the other side sends 64 KiB in one Write.
func TestLegacyOneMessagePerWrite(t *testing.T) {
	const total = 64 << 10
	payload := bytes.Repeat([]byte("legacy"), total/6+1)[:total]
	rl := &recListener{conns: make(map[string]*recConn)}
	var err error
	if rl.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	dp := new(DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(rl) }()
	defer func() {
		dp.Close()
		<-served
	}()
	addr := rl.Addr().String()

	// hello sends a legacy Aloha and reads the DP's with a reader that
	// loses nothing: this test looks at the writes, not at the reader.
	hello := func(r plan5.Role, name string) (net.Conn, *plan5.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(wireTimeout))
		c.Write(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.LegacyVersion, R: r, N: name}))
		pr := plan5.NewReader(c, plan5.DefaultMaxLine)
		if m, err := pr.ReadMessage(); err != nil {
			t.Fatal(err)
		} else if a, ok := m.(*plan5.Aloha); !ok || a.V != plan5.LegacyVersion || a.R != plan5.RoleDP {
			t.Fatalf("the DP answered %+v", m)
		}
		return c, pr
	}
	// readData reads Data of session x until n bytes came.
	readData := func(pr *plan5.Reader, x int64, n int) {
		for got := 0; got < n; {
			m, err := pr.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			d, ok := m.(*plan5.Data)
			if !ok || d.X != x {
				t.Fatalf("got %#v, want Data for X=%d", m, x)
			}
			got += len(d.C)
		}
	}

	t.Run("server", func(t *testing.T) {
		srv, pr := hello(plan5.RoleIS, "legacy")
		defer srv.Close()
		dialed := make(chan net.Conn, 1)
		go func() {
			c, err := Dial(addr, "legacy")
			if err != nil {
				t.Errorf("Dial: %v", err)
			}
			dialed <- c
		}()
		if m, err := pr.ReadMessage(); err != nil || m.Type() != plan5.TypeConnect {
			t.Fatalf("got %v, %v; want Connect", m, err)
		}
		srv.Write(plan5.AppendMessage(nil, &plan5.Ack{X: 1}))
		c := <-dialed
		if c == nil {
			t.FailNow()
		}
		defer c.Close()
		c.Write(payload)
		readData(pr, 1, total)
		if got := checkOnePerWrite(t, rl.writesTo(srv.LocalAddr())); got != total {
			t.Errorf("the DP wrote %d bytes of Data, want %d", got, total)
		}
	})
	t.Run("client", func(t *testing.T) {
		l := listen(t, nil, addr, "burst")
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			c, err := l.Accept()
			if err != nil {
				t.Errorf("Accept: %v", err)
				return
			}
			c.Write(payload)
			c.Close()
		})
		cl, pr := hello(plan5.RoleIC, "")
		defer cl.Close()
		cl.Write(plan5.AppendMessage(nil, &plan5.Connect{N: "burst"}))
		m, err := pr.ReadMessage()
		ack, ok := m.(*plan5.Ack)
		if err != nil || !ok || ack.X < 0 {
			t.Fatalf("got %#v, %v; want an Ack", m, err)
		}
		readData(pr, ack.X, total)
		if m, err := pr.ReadMessage(); err != nil || m.Type() != plan5.TypeClose {
			t.Fatalf("got %#v, %v; want Close", m, err)
		}
		if got := checkOnePerWrite(t, rl.writesTo(cl.LocalAddr())); got != total {
			t.Errorf("the DP wrote %d bytes of Data, want %d", got, total)
		}
	})
}

var legacyRuns = flag.Int("legacy-runs", 10, "runs of each case of TestLegacyReaderBreaks")

// TestLegacyReaderBreaks measures what the legacy form (one message per
// write, LegacyGap apart) buys Plan5's own reader, which loses whatever a
// read brings after the message
// it wanted. A legacy client dials an rtcp server through a DP on loopback,
// and in each case counts the runs in which some read brought bytes past
// its message: whole messages (lost silently) or part of one (Plan5 then
// reports a broken protocol). Run it with -v, and -args -legacy-runs=N for
// more runs. Only the ping-pong case, with never more than one message in
// flight toward the client, must never lose anything.
func TestLegacyReaderBreaks(t *testing.T) {
	dp := runDP(t, new(DiscoverPoint))
	for _, tc := range []struct {
		name     string
		requests int  // requests of 4 bytes from the client, each answered
		reply    int  // bytes the server writes at once, in one Write
		closes   bool // the server closes after its last reply
	}{
		{"greeting", 0, 16, true},     // Ack, Data, Close back to back
		{"reply", 1, 1000, true},      // Data, Close back to back
		{"burst", 1, 64 << 10, true},  // 32 Data and a Close
		{"ping-pong", 10, 100, false}, // one message at a time
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, nil, dp, "svc-"+tc.name)
			var wg sync.WaitGroup
			t.Cleanup(func() { l.Close(); wg.Wait() })
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					wg.Go(func() {
						defer c.Close()
						reply, req := make([]byte, tc.reply), make([]byte, 4)
						for i := 0; i < max(tc.requests, 1); i++ {
							if tc.requests > 0 {
								if _, err := io.ReadFull(c, req); err != nil {
									return
								}
							}
							if _, err := c.Write(reply); err != nil {
								return
							}
						}
						if !tc.closes {
							io.Copy(io.Discard, c)
						}
					})
				}
			})
			var lost, silent int
			for range *legacyRuns {
				dropped := legacyRun(t, dp, "svc-"+tc.name, tc.requests, tc.reply, tc.closes)
				if len(dropped) == 0 {
					continue
				}
				lost++
				r := plan5.NewReader(bytes.NewReader(dropped), plan5.DefaultMaxLine)
				for {
					_, err := r.ReadMessage()
					if err == io.EOF {
						silent++
					}
					if err != nil {
						break
					}
				}
			}
			t.Logf("%s: in %d of %d runs a read brought bytes past its message: %d lost whole messages silently, %d cut one (Plan5: broken protocol)",
				tc.name, lost, *legacyRuns, silent, lost-silent)
			if tc.name == "ping-pong" && lost > 0 {
				t.Errorf("with one message in flight at a time, %d runs lost bytes", lost)
			}
		})
	}
}

// legacyRun runs one session of a legacy client and returns what one of
// its reads brought past a message, or nil if none did.
func legacyRun(t *testing.T, dp, name string, requests, reply int, closes bool) []byte {
	p := dialLegacy(t, dp)
	defer p.c.Close()
	p.hello(plan5.RoleIC, "")
	p.mustSend(&legacyConnect{N: name})
	// next reads a message, which must be a T unless a read lost bytes.
	var dropped []byte
	next := func(want string) any {
		m, err := p.recv()
		if err != nil {
			t.Fatalf("legacy client, waiting for %s: %v", want, err)
		}
		dropped = p.dropped
		return m
	}
	m := next("Ack")
	ack, ok := m.(*legacyAck)
	if !ok || ack.X < 0 {
		t.Fatalf("legacy client got %#v, want an Ack", m)
	}
	for i := 0; i < max(requests, 1) && dropped == nil; i++ {
		if requests > 0 {
			p.mustSend(&legacyData{X: ack.X, C: []byte("ping")})
		}
		for got := 0; got < reply && dropped == nil; {
			d, ok := next("Data").(*legacyData)
			if !ok || d.X != ack.X {
				t.Fatalf("legacy client got %#v, want Data for X=%d", d, ack.X)
			}
			got += len(d.C)
		}
	}
	if dropped != nil {
		return dropped
	}
	if !closes {
		p.mustSend(&legacyClose{X: ack.X, R: "bye"})
		return nil
	}
	if _, ok := next("Close").(*legacyClose); !ok {
		t.Fatalf("legacy client: want Close")
	}
	return dropped
}
