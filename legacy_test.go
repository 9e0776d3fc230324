package rtcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

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
	t testing.TB
	c net.Conn
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
// for each message, and what it read past the message gone with it.
func (p *legacyPeer) recv() (any, error) {
	p.c.SetReadDeadline(time.Now().Add(wireTimeout))
	sc := bufio.NewScanner(p.c)
	sc.Buffer(make([]byte, legacyBuffer), legacyBuffer)
	sc.Scan()
	typ := sc.Bytes()
	if len(typ) != 1 {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		if len(typ) == 0 {
			return nil, io.EOF
		}
		return nil, errBroken
	}
	t := typ[0]
	sc.Scan()
	var m any
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
		return nil, fmt.Errorf("legacy peer: invalid message type %q", t)
	}
	if err := json.Unmarshal(sc.Bytes(), m); err != nil {
		return nil, fmt.Errorf("legacy peer: %w", err)
	}
	return m, nil
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
	return v
}

// hello sends the original's Aloha in role r and checks the DP's answer.
func (p *legacyPeer) hello(r plan5.Role, name string) {
	p.t.Helper()
	p.mustSend(&legacyAloha{V: plan5.LegacyVersion, R: int(r), N: name})
	a := expect[legacyAloha](p)
	if a.R != int(plan5.RoleDP) || a.V != plan5.LegacyVersion {
		p.t.Fatalf("the DP answered Plan5's Aloha with %+v; want R=4 in its version 113", a)
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
