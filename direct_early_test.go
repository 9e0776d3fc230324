package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// The DP's early offer (Connect EarlyPeer): the client learns the
// server's address and the secret as the DP asks the server, and punches
// from then on, as the server does, a round trip before the Ack.

// TestDirectEarlyOffer: a server that has not answered yet (ManualAck)
// holds a proven direct connection to the client, whose punch started at
// the early offer, not at the Ack; once it answers, the session moves.
func TestDirectEarlyOffer(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
	d := &Dialer{Direct: true}
	done := dialAsync(context.Background(), d, addr, "printer-7")
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	s := sc.(*Conn)
	// Before any answer (DirectError would give one: it accepts the
	// session), the server's punch has met the client's.
	punched(s)
	select {
	case r := <-done:
		t.Fatalf("the dial returned before the server answered: %v", r.err)
	default:
	}
	if err := s.s.(*moveConn).punchErr(); err != nil {
		t.Fatalf("the server's punch, before its answer: %v", err)
	}
	if err := s.Ack(nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	c := r.c.(*Conn)
	defer c.Close()
	go func() {
		io.Copy(sc, sc)
		s.CloseWrite()
	}()
	punched(c)
	echoCheck(t, c, 64<<10) // moves the session
	if !c.Direct() {
		t.Errorf("the client's session stays on the relay: %v", c.DirectError())
	}
}

// TestDirectEarlyOfferBesideOpen: the DP's early offer goes out beside
// the open, not in front of it. A client that reads nothing yet (its
// connection a net.Pipe, where a write waits for the reader) holds up no
// open: the server has it first. Then the client reads the DP's Aloha,
// the early offer and, once the server answered, the Ack, in that order.
func TestDirectEarlyOfferBesideOpen(t *testing.T) {
	// A DP that wrote the offer first would give up on it after
	// HandshakeTimeout, and the client would then wait for an answer in
	// vain (wireTimeout).
	dp := &DiscoverPoint{HandshakeTimeout: 2 * time.Second}
	addr := startDP(t, dp)
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
	c, dc := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		dp.ServeConn(dc)
	}()
	defer func() {
		c.Close()
		<-served
	}()
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(plan5.AppendMessage(plan5.AppendMessage(nil,
			&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Transport: wireRaw}),
			&plan5.Connect{N: "printer-7", Direct: true, EarlyPeer: true}))
		wrote <- err
	}()
	sc, err := l.Accept() // the client has read nothing
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wireTimeout))
	r := plan5.NewReader(c, plan5.DefaultMaxLine)
	read := func() plan5.Message {
		t.Helper()
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("reading the DP's answer: %v", err)
		}
		return m
	}
	if a, ok := read().(*plan5.Aloha); !ok || a.Transport != wireRaw {
		t.Fatalf("first answer %+v, want the DP's Aloha offering the raw leg", a)
	}
	offer, ok := read().(*plan5.Ack)
	if !ok || offer.X != 0 || !brokersDirect(offer.Peer, offer.Secret) {
		t.Fatalf("second answer %+v, want the early offer", offer)
	}
	if err := sc.(*Conn).Ack(nil); err != nil {
		t.Fatal(err)
	}
	ack, ok := read().(*plan5.Ack)
	if !ok || ack.X < 1 || ack.Peer != offer.Peer || !bytes.Equal(ack.Secret, offer.Secret) {
		t.Fatalf("answer %+v after the early offer %+v, want the Ack with its Peer and Secret", ack, offer)
	}
}

// earlyDP is a DP that answers one raw client's Connect, which must ask
// for the early offer, with the offer (an Ack with X 0, Peer and
// secret), then, once next says so, with final (nil: it closes the
// connection instead).
func earlyDP(t *testing.T, offer *plan5.Ack, next <-chan *plan5.Ack) (addr string, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ends := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ends <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wireTimeout))
		r := plan5.NewReader(c, 0)
		if _, err := plan5link.ReadAloha(r); err != nil {
			ends <- err
			return
		}
		m, err := r.ReadMessage()
		if err != nil {
			ends <- err
			return
		}
		if cm, ok := m.(*plan5.Connect); !ok || !cm.Direct || !cm.EarlyPeer {
			ends <- errors.New("the client did not ask for a direct path with the early offer")
			return
		}
		ours := &plan5.Aloha{R: plan5.RoleDP, N: "early", Transport: wireRaw}
		plan5link.Offer(ours, plan5.DefaultMaxLine)
		if err := plan5link.WriteMessages(c, 0, ours, offer); err != nil {
			ends <- err
			return
		}
		final := <-next
		if final == nil {
			ends <- nil // the DP goes away without an answer
			return
		}
		if err := plan5link.WriteMessage(c, final, 0); err != nil {
			ends <- err
			return
		}
		if final.X > 0 {
			io.Copy(io.Discard, c) // the session, until the client closes it
		}
		ends <- nil
	}()
	return ln.Addr().String(), ends
}

// peerListener stands for a server's punch: it takes the connections the
// client's punch makes to it, which never prove themselves.
func peerListener(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, l.Addr().String()
}

// TestDirectEarlyOfferAbandoned: a punch that the early offer started is
// ended, and its connection closed, on every way the dial makes no use
// of it: a refusal, an Ack that does not broker the session, and an Ack
// that names another server link (the first failed under the open),
// which the client then punches to instead; the DP going away without
// an answer, and the dial's context cancelled while it waits for one.
func TestDirectEarlyOfferAbandoned(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, secretLen)
	for _, tc := range []struct {
		name     string
		final    func(other string) *plan5.Ack
		wantDial bool
		other    bool // the final Ack names the other listener
		cancel   bool // the dial's context is cancelled before the answer
	}{
		{"refused", func(string) *plan5.Ack { return &plan5.Ack{X: -1, R: "no"} }, false, false, false},
		{"not brokered", func(string) *plan5.Ack { return &plan5.Ack{X: 1} }, true, false, false},
		{"another link", func(other string) *plan5.Ack {
			return &plan5.Ack{X: 1, Peer: other, Secret: bytes.Repeat([]byte{8}, secretLen)}
		}, true, true, false},
		{"DP gone", func(string) *plan5.Ack { return nil }, false, false, false},
		{"cancelled", func(string) *plan5.Ack { return nil }, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, firstAddr := peerListener(t)
			other, otherAddr := peerListener(t)
			next := make(chan *plan5.Ack, 1)
			addr, served := earlyDP(t, &plan5.Ack{X: 0, Peer: firstAddr, Secret: secret}, next)
			locals := make(chan netip.AddrPort, 1)
			d := localsDialer(locals)
			d.DirectTimeout = time.Minute // only the dial ends it
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := dialAsync(ctx, &d, addr, "printer-7")
			local := <-locals
			// The punch, started by the offer, reaches the first link.
			pc, err := first.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			if got := pc.RemoteAddr().String(); got != local.String() {
				t.Fatalf("a connect from %v, want the client's port %v", got, local)
			}
			var r dialed
			if tc.cancel {
				cancel()
				r = <-done
				next <- tc.final(otherAddr)
			} else {
				next <- tc.final(otherAddr)
				r = <-done
			}
			if (r.err == nil) != tc.wantDial {
				t.Fatalf("dial: %v", r.err)
			}
			if r.c != nil {
				defer r.c.Close()
			}
			var re *RefusedError
			switch {
			case tc.wantDial:
			case tc.cancel:
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("dial: %v; want context.Canceled", r.err)
				}
			case tc.final("") == nil:
				if errors.As(r.err, &re) {
					t.Errorf("dial: %v; want the DP's connection's end, not a refusal", r.err)
				}
			case !errors.As(r.err, &re):
				t.Errorf("dial: %v; want a RefusedError", r.err)
			}
			// The client closed the offer's connection: it ends,
			// cleanly or with a reset, not by the deadline.
			pc.SetReadDeadline(time.Now().Add(wireTimeout))
			if _, err := io.Copy(io.Discard, pc); isTimeout(err) {
				t.Error("the early punch's connection is still open")
			}
			if tc.other {
				oc, err := other.Accept()
				if err != nil {
					t.Fatal(err)
				}
				if got := oc.RemoteAddr().String(); got != local.String() {
					t.Errorf("a connect to the Ack's link from %v, want the client's port %v", got, local)
				}
				oc.Close()
			}
			if r.c != nil {
				r.c.Close()
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDirectEarlyOfferTwice: a DP that sends its early offer a second
// time, where its answer belongs, breaks the protocol: the dial fails
// with an error that says so, and closes what the first offer's punch
// made, instead of taking the second offer (X 0) for an open session
// whose bytes would then begin with the DP's real answer.
func TestDirectEarlyOfferTwice(t *testing.T) {
	first, firstAddr := peerListener(t)
	offer := &plan5.Ack{X: 0, Peer: firstAddr, Secret: bytes.Repeat([]byte{7}, secretLen)}
	next := make(chan *plan5.Ack, 1)
	addr, served := earlyDP(t, offer, next)
	d := &Dialer{Direct: true, DirectTimeout: time.Minute} // only the dial ends the punch
	done := dialAsync(context.Background(), d, addr, "printer-7")
	// The first offer's punch reaches the link; then the offer again.
	pc, err := first.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	next <- offer
	r := <-done
	if r.err == nil {
		r.c.Close()
		t.Fatal("the dial took a second early offer for the DP's answer")
	}
	var re *RefusedError
	if errors.As(r.err, &re) {
		t.Errorf("dial: %v; want a protocol error, not a refusal", r.err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// The dial closed the first offer's connection when it failed.
	pc.SetReadDeadline(time.Now().Add(wireTimeout))
	if _, err := io.Copy(io.Discard, pc); isTimeout(err) {
		t.Error("the early punch's connection is still open")
	}
}

// TestDirectEarlyOfferPolicyRefused: the early offer goes only to a
// client that the DP's Policy lets through and whose session the DP
// brokers: one that the Policy refuses (its network, its key) gets an
// Ack -1 and nothing else, never the server's address or a secret; one
// that asks for the offer without Direct, or of a DP with NoDirect, gets
// the plain answer. The allowed case shows the offer does come, first.
func TestDirectEarlyOfferPolicyRefused(t *testing.T) {
	allowed := NameRule{Name: "printer-7"}
	for _, tc := range []struct {
		name     string
		rule     NameRule
		noDirect bool // the DP runs with NoDirect
		indirect bool // the Connect asks for the offer without Direct
		want     string
	}{
		{name: "not from its network", rule: NameRule{Name: "printer-7", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, want: "refused"},
		{name: "not its key", rule: NameRule{Name: "printer-7", Clients: []string{"alice"}}, want: "refused"},
		{name: "without Direct", rule: allowed, indirect: true, want: "refused by the server"},
		{name: "NoDirect", rule: allowed, noDirect: true, want: "refused by the server"},
		{name: "allowed", rule: allowed, want: "offer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startDP(t, &DiscoverPoint{NoDirect: tc.noDirect,
				Policy: &Policy{Keys: testKeys(), AnonymousServers: true, AnonymousClients: true, Names: []NameRule{tc.rule}}})
			l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
			go func() {
				// Refuse what comes: the allowed case needs only the
				// early offer, which comes before the answer.
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.(*Conn).Ack(errors.New("no"))
				}
			}()
			p := dialRaw(t, addr)
			p.send(string(plan5.AppendMessage(plan5.AppendMessage(nil,
				&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Transport: wireRaw}),
				&plan5.Connect{N: "printer-7", Direct: !tc.indirect, EarlyPeer: true})))
			if a, ok := p.read().(*plan5.Aloha); !ok || a.Transport != wireRaw {
				t.Fatalf("first answer %+v, want the DP's Aloha offering the raw leg", a)
			}
			ack, ok := p.read().(*plan5.Ack)
			if !ok {
				t.Fatalf("answer to Connect %+v, want an Ack", ack)
			}
			if tc.want == "offer" {
				if ack.X != 0 || !brokersDirect(ack.Peer, ack.Secret) {
					t.Fatalf("an allowed client got %+v first, want the early offer", ack)
				}
				ack, ok = p.read().(*plan5.Ack)
				if !ok {
					t.Fatalf("answer after the early offer %+v, want an Ack", ack)
				}
			}
			if ack.X >= 0 || ack.Peer != "" || ack.Secret != nil {
				t.Fatalf("got %+v, want Ack -1 without Peer or Secret", ack)
			}
			if tc.want != "refused" && !strings.HasSuffix(ack.R, ": no") {
				t.Errorf("got %+v, want the server's refusal", ack)
			}
		})
	}
}

// dialed is what a dial of dialAsync returned.
type dialed struct {
	c   net.Conn
	err error
}

// dialAsync dials name through addr with d in a goroutine of its own and
// sends the outcome on the returned channel.
func dialAsync(ctx context.Context, d *Dialer, addr, name string) <-chan dialed {
	done := make(chan dialed, 1)
	go func() {
		c, err := d.DialContext(ctx, addr, name)
		done <- dialed{c, err}
	}()
	return done
}

// halfWriteConn fails its first Write after writing half of it, as a
// write that met its deadline partway does.
type halfWriteConn struct {
	net.Conn
	first []byte // what that first Write was given
}

func (c *halfWriteConn) Write(p []byte) (int, error) {
	if c.first != nil {
		return c.Conn.Write(p)
	}
	c.first = bytes.Clone(p)
	n, _ := c.Conn.Write(p[:len(p)/2])
	return n, os.ErrDeadlineExceeded
}

// TestDPEarlyOfferWriteFailed: a write of the early offer that failed
// partway leaves half a line on the client's connection; the DP then
// writes nothing more to it (the Ack would read as the rest of that
// line) and ends it, so the client reads the half line and the end; and
// it logs why.
func TestDPEarlyOfferWriteFailed(t *testing.T) {
	events, logger := newLogEvents()
	dp := &DiscoverPoint{Logger: logger}
	addr := startDP(t, dp)
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
	c, dc := net.Pipe()
	hc := &halfWriteConn{Conn: dc}
	served := make(chan struct{})
	go func() {
		defer close(served)
		dp.ServeConn(hc)
	}()
	defer func() {
		c.Close()
		<-served
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if _, err := c.Write(plan5.AppendMessage(plan5.AppendMessage(nil,
		&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Transport: wireRaw}),
		&plan5.Connect{N: "printer-7", Direct: true, EarlyPeer: true})); err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.(*Conn).Ack(nil) // the DP's answer to the client must not follow the half line
	c.SetReadDeadline(time.Now().Add(wireTimeout))
	b := <-got
	if want := hc.first[:len(hc.first)/2]; !bytes.Equal(b, want) {
		t.Errorf("the client read %q after the DP's failed write of %q; want its first half and the end", b, hc.first)
	}
	events.wait(t, logAnswerFailed, 1)
}
