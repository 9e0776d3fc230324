package rtcp

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"rtcp/protocol/plan5"
)

// A Dialer sends its Connect with its Aloha to a DP known to offer the raw
// leg. When the DP at that address no longer offers it (here a plain spec
// DP), the Dialer must not take that DP's answer to the early Connect for
// its session: it dials again and opens the session the seed's way.
func TestDialEarlyConnectFallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	d := &Dialer{Transport: TransportYamux}
	d.raw.set(addr, true)

	plain := func(c net.Conn) (connects int, err error) {
		defer c.Close()
		r := plan5.NewReader(c, 0)
		m, err := r.ReadMessage()
		if err != nil {
			return 0, err
		}
		if a, ok := m.(*plan5.Aloha); !ok || a.Transport != wireRaw {
			t.Errorf("first message %#v, want an Aloha asking for the raw leg", m)
		}
		// A plain DP: no Transport in its answer.
		if _, err := c.Write(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP})); err != nil {
			return 0, err
		}
		for {
			m, err := r.ReadMessage()
			if err == io.EOF {
				return connects, nil
			}
			if err != nil {
				return connects, err
			}
			if _, ok := m.(*plan5.Connect); !ok {
				continue
			}
			connects++
			out := plan5.AppendMessage(nil, &plan5.Ack{X: 7})
			out = plan5.AppendMessage(out, &plan5.Data{X: 7, C: []byte("hi")})
			if _, err := c.Write(out); err != nil {
				return connects, err
			}
		}
	}
	type result struct {
		connects int
		err      error
	}
	results := make(chan result, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				results <- result{err: err}
				return
			}
			n, err := plain(c)
			results <- result{n, err}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := d.DialContext(ctx, addr, "printer")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// The first connection's early Connect may have been answered: the
	// Dialer closed it without reading the answer.
	<-results
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want \"hi\"", buf, err)
	}
	c.Close()
	if second := <-results; second.err != nil || second.connects != 1 {
		t.Errorf("second connection: %d Connects, %v; want 1, nil", second.connects, second.err)
	}
	if d.raw.has(addr) {
		t.Errorf("the DP is still taken to offer the raw leg")
	}
}

// TestDPAnswersEarlyConnect: a raw client that sends its Connect with its
// Aloha gets the DP's Aloha and the answer to its Connect together, in
// that order: Ack and then the session's bytes for a served name, Ack -1
// with the reason for any other.
func TestDPAnswersEarlyConnect(t *testing.T) {
	dp := runDP(t, new(DiscoverPoint))
	l, err := Listen(dp, "echo")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, l)
	hello := func(name string) *rawPeer {
		p := dialRaw(t, dp)
		p.send(string(plan5.AppendMessage(plan5.AppendMessage(nil,
			&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Transport: wireRaw}),
			&plan5.Connect{N: name})))
		if a, ok := p.read().(*plan5.Aloha); !ok || a.R != plan5.RoleDP || a.Transport != wireRaw {
			t.Fatalf("first answer %+v, want the DP's Aloha offering the raw leg", a)
		}
		return p
	}

	p := hello("echo")
	if ack, ok := p.read().(*plan5.Ack); !ok || ack.X < 0 {
		t.Fatalf("answer to Connect %+v, want Ack", ack)
	}
	p.send("ping")
	buf := make([]byte, 4)
	p.c.SetReadDeadline(time.Now().Add(wireTimeout))
	if _, err := io.ReadFull(p.r.Buffered(), buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo read %q, %v", buf, err)
	}

	p = hello("nobody")
	if ack, ok := p.read().(*plan5.Ack); !ok || ack.X >= 0 || !strings.Contains(ack.R, `"nobody"`) {
		t.Fatalf("answer to Connect %+v, want Ack -1 naming the server", ack)
	}
}
