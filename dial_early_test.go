package rtcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/protocol/plan5"
)

// plainDP is a DP that implements only the seed, with one buffered reader
// per connection (SPEC.md): it offers no raw leg, so a Connect that a
// Dialer sends with its Aloha is that of the JSON leg. Each connection is
// served by serve, after the Alohas; plainDP counts the connections and
// reports their ends on the returned channel.
func plainDP(t *testing.T, serve func(c net.Conn, r *plan5.Reader, read []byte) error) (addr string, conns <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ends := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(wireTimeout))
				tee := &teeReader{r: c}
				r := plan5.NewReader(tee, 0)
				m, err := r.ReadMessage()
				if err != nil {
					ends <- err
					return
				}
				if _, ok := m.(*plan5.Aloha); !ok {
					ends <- fmt.Errorf("first message %#v, want an Aloha", m)
					return
				}
				ends <- serve(c, r, tee.got)
			}()
		}
	}()
	return ln.Addr().String(), ends
}

// TestDialEarlyConnectFallback: a Dialer sends its Connect with its Aloha
// to a DP it knows nothing of (or knows to offer the raw leg: another DP
// may have taken the address). A plain DP answers without the raw leg and
// reads the Connect as the JSON leg's: the session opens on that one
// connection, with every byte the DP sent after its Ack, and a refusal is
// a RefusedError.
func TestDialEarlyConnectFallback(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport Transport
		known     dpKind // what the Dialer knows of the DP before
		direct    bool   // Dialer.Direct: the Connect asks for a direct path
	}{
		{"json", TransportJSON, dpUnknown, false},
		{"raw", TransportYamux, dpUnknown, false},
		{"raw, known raw", TransportYamux, dpRaw, false},
		{"direct", TransportJSON, dpUnknown, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var connects atomic.Int32
			addr, ends := plainDP(t, func(c net.Conn, r *plan5.Reader, read []byte) error {
				m, err := r.ReadMessage()
				if err != nil {
					return err
				}
				cm, ok := m.(*plan5.Connect)
				if !ok {
					return fmt.Errorf("second message %#v, want Connect", m)
				}
				connects.Add(1)
				// It came with the Aloha, and is exactly what the JSON
				// leg's Open sends, with Direct (and EarlyPeer, for the
				// raw leg's early offer) if the Dialer asked.
				want := plan5.AppendMessage(nil, &plan5.Connect{N: "printer", Direct: tc.direct, EarlyPeer: tc.direct})
				if !bytes.HasSuffix(read, want) || cm.N != "printer" {
					return fmt.Errorf("read %q with the Aloha, want it to end with %q", read, want)
				}
				// The answers, all in one write: the Dialer must lose
				// none of what comes with its Aloha's answer.
				out := plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: "plain"})
				out = plan5.AppendMessage(out, &plan5.Ack{X: 7})
				out = plan5.AppendMessage(out, &plan5.Data{X: 7, C: []byte("hi")})
				if _, err := c.Write(out); err != nil {
					return err
				}
				for {
					m, err := r.ReadMessage()
					if err != nil {
						return err
					}
					switch m := m.(type) {
					case *plan5.Data: // echo
						if _, err := c.Write(plan5.AppendMessage(nil, m)); err != nil {
							return err
						}
					case *plan5.Close:
						return nil
					case *plan5.Connect:
						return errors.New("a second Connect")
					}
				}
			})
			d := &Dialer{Transport: tc.transport, Direct: tc.direct}
			d.known.set(addr, tc.known)
			ctx, cancel := context.WithTimeout(context.Background(), wireTimeout)
			defer cancel()
			c, err := d.DialContext(ctx, addr, "printer")
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			buf := make([]byte, 6)
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hiping" {
				t.Fatalf("read %q, %v; want \"hiping\"", buf, err)
			}
			c.Close()
			if err := <-ends; err != nil {
				t.Errorf("the plain DP: %v", err)
			}
			select {
			case err := <-ends:
				t.Errorf("a second connection to the DP (%v)", err)
			default:
			}
			if n := connects.Load(); n != 1 {
				t.Errorf("the DP read %d Connects, want 1", n)
			}
			if k := d.known.get(addr); k != dpUnknown {
				t.Errorf("the Dialer takes the DP for %v, want %v (no raw leg)", k, dpUnknown)
			}
		})
	}
}

// TestDialEarlyConnectRefused: a plain DP that refuses the Connect sent
// with the Aloha (Ack X=-1 with a reason) is a RefusedError, and the
// Dialer dials nothing more.
func TestDialEarlyConnectRefused(t *testing.T) {
	addr, ends := plainDP(t, func(c net.Conn, r *plan5.Reader, _ []byte) error {
		if _, err := r.ReadMessage(); err != nil {
			return err
		}
		out := plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP})
		out = plan5.AppendMessage(out, &plan5.Ack{X: -1, R: "no printer here"})
		_, err := c.Write(out)
		return err
	})
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		d := &Dialer{Transport: tr}
		_, err := d.DialContext(context.Background(), addr, "printer")
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != "no printer here" || re.Name != "printer" {
			t.Errorf("transport %v: Dial: %v, want a RefusedError with the DP's reason", tr, err)
		}
		if err := <-ends; err != nil {
			t.Errorf("transport %v: the plain DP: %v", tr, err)
		}
	}
	select {
	case err := <-ends:
		t.Errorf("a connection more than one a dial (%v)", err)
	default:
	}
}

// TestDialEarlyConnectLegacyDP: Plan5's own DP (legacyPeer: V 113, a new
// reader per message) loses a Connect that comes with the Aloha, or may
// not. A Dialer that sent one and gets a V 113 answer dials again, once,
// and sends its Connect after the DP's Aloha; it remembers the DP, so
// that its next dial there takes one connection.
func TestDialEarlyConnectLegacyDP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type conn struct {
		connects int
		err      error
	}
	conns := make(chan conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				p := &legacyPeer{t: t, c: c}
				var res conn
				defer func() { conns <- res }()
				m, err := p.recv()
				if _, ok := m.(*legacyAloha); !ok || err != nil {
					res.err = fmt.Errorf("first message %#v, %v; want an Aloha", m, err)
					return
				}
				// Plan5's DP answers in its version, and HeartBeat 0.
				if res.err = p.send(&legacyAloha{V: plan5.LegacyVersion, R: int(plan5.RoleDP)}); res.err != nil {
					return
				}
				for {
					m, err := p.recv()
					if err == io.EOF {
						return
					}
					if err != nil {
						res.err = err
						return
					}
					switch m.(type) {
					case *legacyConnect:
						res.connects++
						if res.err = p.send(&legacyAck{X: 1}); res.err != nil {
							return
						}
						if res.err = p.send(&legacyData{X: 1, C: []byte("hi")}); res.err != nil {
							return
						}
					case *legacyClose:
						return
					}
				}
			}()
		}
	}()
	addr := ln.Addr().String()
	var d Dialer
	dial := func(wantConns int) {
		t.Helper()
		c, err := d.DialContext(context.Background(), addr, "printer")
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q, %v; want \"hi\"", buf, err)
		}
		c.Close()
		connects := 0
		for range wantConns {
			r := <-conns
			if r.err != nil {
				t.Errorf("Plan5's DP: %v", r.err)
			}
			connects += r.connects
		}
		if connects != 1 {
			t.Errorf("Plan5's DP read %d Connects on %d connections, want 1", connects, wantConns)
		}
	}
	dial(2) // the Connect sent with the Aloha was lost with Plan5's first reader
	if k := d.known.get(addr); k != dpLegacy {
		t.Fatalf("the Dialer takes the DP for %v, want %v", k, dpLegacy)
	}
	dial(1)
	select {
	case r := <-conns:
		t.Errorf("one connection more (%+v)", r)
	default:
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
