package rtcp

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/nettest"

	"rtcp/internal/memnet"
	"rtcp/protocol/plan5"
)

// Spare data links of the TCP transport (datalink.go): kept, used,
// refilled, bounded, noticed when they die, and left alone by peers that
// do not know them.

const spareRTT = 100 * time.Millisecond

// settle lets everything under way finish: dials, handshakes, backoffs.
func settle() {
	time.Sleep(10 * time.Second)
	synctest.Wait()
}

// dialResult is what a dial from a goroutine reports.
type dialResult struct {
	took time.Duration
	c    net.Conn
	err  error
}

// dialGreetingAsync is dialGreeting for a goroutine.
func dialGreetingAsync(n *memnet.Listener, ch chan<- dialResult) {
	d := &Dialer{Transport: TransportYamux, Dial: n.Dialer("client", 0)}
	start := time.Now()
	c, err := d.DialContext(context.Background(), delayDP, "printer")
	if err == nil {
		buf := make([]byte, 2)
		if _, err = io.ReadFull(c, buf); err != nil {
			c.Close()
			c = nil
		}
	}
	ch <- dialResult{time.Since(start), c, err}
}

// TestSpareBurst: more sessions at once than there are spares. The first
// ones take the spares, the others dial their data links, all of them
// work, and the pool is full again afterwards.
func TestSpareBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, dp, _, stop := spareTestNet(t, nil, ListenConfig{Transport: TransportTCP}, spareRTT)
		defer stop()
		const dials = 5
		ch := make(chan dialResult, dials)
		for range dials {
			go dialGreetingAsync(n, ch)
		}
		fast := 0
		for range dials {
			r := <-ch
			if r.err != nil {
				t.Fatalf("Dial: %v", r.err)
			}
			defer r.c.Close()
			if r.took == spareRTT {
				fast++
			}
		}
		if fast != defaultSpares {
			t.Errorf("%d of %d sessions took one round trip, want %d (one per spare)", fast, dials, defaultSpares)
		}
		settle()
		if got := dp.idleSpares(t); got != defaultSpares {
			t.Errorf("%d spares idle after the burst, want %d", got, defaultSpares)
		}
	})
}

// TestSpareDiesIdle: a spare that ends while idle leaves the DP's pool as
// soon as its end arrives, and the server dials another in its place.
func TestSpareDiesIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, dp, _, stop := spareTestNet(t, nil, ListenConfig{Transport: TransportTCP}, spareRTT)
		defer stop()
		dials := len(n.Dials("server"))
		n.Link("server", 1).Peer.Close() // a spare, at the server's end
		time.Sleep(spareRTT / 2)
		synctest.Wait()
		if got := dp.idleSpares(t); got != defaultSpares-1 {
			t.Errorf("%d spares idle half a round trip after one ended, want %d", got, defaultSpares-1)
		}
		settle()
		if got := dp.idleSpares(t); got != defaultSpares {
			t.Errorf("%d spares idle after the server dialled again, want %d", got, defaultSpares)
		}
		if got := len(n.Dials("server")) - dials; got != 1 {
			t.Errorf("the server dialled %d times, want once (the lost spare)", got)
		}
		took, c := dialGreeting(t, n, "")
		defer c.Close()
		if took != spareRTT {
			t.Errorf("a dial took %v, want a round trip (%v)", took, spareRTT)
		}
	})
}

// TestSpareEnds: spares end with their control link, at both ends, and
// with the Listener; the DP's books go back to zero each time.
func TestSpareEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, dp, l, stop := spareTestNet(t, nil, ListenConfig{Transport: TransportTCP}, spareRTT)
		defer stop()
		spare := n.Link("server", 1)
		n.Link("server", 0).Cut() // the control link
		settle()
		if _, err := spare.Peer.Write([]byte{0}); err == nil {
			t.Error("a spare of the lost control link is still open at the server")
		}
		if got := dp.idleSpares(t); got != defaultSpares {
			t.Errorf("%d spares idle after the server's link came back, want %d", got, defaultSpares)
		}
		links := len(dp.sparingLinks())
		if got := links; got != 1 {
			t.Errorf("the DP knows %d control links with spares, want 1", got)
		}
		l.Close()
		synctest.Wait() // the server closes its spares
		time.Sleep(spareRTT / 2)
		synctest.Wait()
		if got := dp.idleSpares(t); got != 0 {
			t.Errorf("%d spares idle after Listener.Close, want 0", got)
		}
	})
}

// TestSpareLimits: the DP holds at most maxSparesPerLink for one link, and
// a server's spares together within MaxLinksPerOwner, refusing the rest
// with the reason; sessions work all the same.
func TestSpareLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dp      *DiscoverPoint
		spares  int
		want    int
		refused bool
	}{
		{"per link", &DiscoverPoint{}, 10, maxSparesPerLink, false},
		{"per owner", &DiscoverPoint{MaxLinksPerOwner: 1}, 2, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, dp, _, stop := spareTestNet(t, tc.dp, ListenConfig{Transport: TransportTCP, Spares: tc.spares}, spareRTT)
				defer stop()
				if got := dp.idleSpares(t); got != tc.want {
					t.Errorf("%d spares idle, want %d", got, tc.want)
				}
				if got := dp.Stats().Refused["max_links_per_owner"]; (got > 0) != tc.refused {
					t.Errorf("%d spares refused by MaxLinksPerOwner, want refusals: %v", got, tc.refused)
				}
				for range tc.want + 1 {
					_, c := dialGreeting(t, n, "")
					c.Close()
				}
			})
		})
	}
}

// TestSpareOldPeers: a server that asks for no spares (as before them) is
// granted none, and a server whose DP grants none (a DP from before them:
// the keys are gone from its answer) keeps none; sessions dial their data
// links.
func TestSpareOldPeers(t *testing.T) {
	t.Run("old server", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n, dp, _, stop := spareTestNet(t, nil, ListenConfig{Transport: TransportTCP, Spares: -1}, 0)
			defer stop()
			links := len(dp.sparingLinks())
			if links != 0 {
				t.Error("the DP granted spares to a server that asked for none")
			}
			_, c := dialGreeting(t, n, "")
			c.Close()
		})
	})
	t.Run("old DP", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := memnet.New(delayDP)
			dp := new(DiscoverPoint)
			served := make(chan error, 1)
			go func() { served <- dp.Serve(n) }()
			dial := n.Dialer("server", 0)
			lc := ListenConfig{Transport: TransportTCP, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return &oldDPConn{Conn: c}, nil
			}}
			l, err := lc.Listen(context.Background(), delayDP, "printer")
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				c, err := l.Accept()
				if err == nil {
					c.Write([]byte("hi"))
					c.Close()
				}
			}()
			settle()
			if got := len(n.Dials("server")); got != 1 {
				t.Errorf("the server dialled %d times before any session, want once (its link)", got)
			}
			_, c := dialGreeting(t, n, "")
			c.Close()
			l.Close()
			dp.Close()
			<-served
			n.CutAll()
		})
	})
}

// oldDPConn makes the DP look as if it did not know spares: its first
// answer loses the keys that grant them.
type oldDPConn struct {
	net.Conn
	seen bool
}

var grantKeys = regexp.MustCompile(`,"(Token|Spares)":("[^"]*"|\d+)`)

func (c *oldDPConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.seen && n > 0 {
		c.seen = true
		b := grantKeys.ReplaceAll(p[:n], nil)
		n = copy(p, b)
	}
	return n, err
}

// TestSpareWire speaks the server's side of spares by hand: what the DP
// asks and accepts on the wire (SPEC.md, "Spare data links"), that the
// session's first bytes may share a write with the Ack, that a refusal
// reaches the client with its reason, and that the DP drops a spare that
// sends while idle or presents a token it does not know.
func TestSpareWire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(delayDP)
		dp := new(DiscoverPoint)
		served := make(chan error, 1)
		go func() { served <- dp.Serve(n) }()
		defer func() {
			dp.Close()
			<-served
			n.CutAll()
		}()
		dial := n.Dialer("server", 0)
		say := func(c net.Conn, ms ...plan5.Message) {
			t.Helper()
			var b []byte
			for _, m := range ms {
				b = plan5.AppendMessage(b, m)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		hear := func(r *plan5.Reader) plan5.Message {
			t.Helper()
			m, err := r.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		v := plan5.Version
		ctl, err := dial(context.Background(), "tcp", delayDP)
		if err != nil {
			t.Fatal(err)
		}
		defer ctl.Close()
		say(ctl, &plan5.Aloha{V: v, R: plan5.RoleIS, N: "printer", Owner: "o", Transport: "tcp", Spares: 9})
		grant := hear(plan5.NewReader(ctl, 0)).(*plan5.Aloha)
		if grant.Transport != "tcp" || grant.Spares != maxSparesPerLink || grant.Token == "" {
			t.Fatalf("the DP answered %+v, want Transport tcp, Spares %d and a Token", grant, maxSparesPerLink)
		}
		spare := func(token string) (net.Conn, *plan5.Reader, *plan5.Aloha) {
			t.Helper()
			c, err := dial(context.Background(), "tcp", delayDP)
			if err != nil {
				t.Fatal(err)
			}
			r := plan5.NewReader(c, 0)
			say(c, &plan5.Aloha{V: v, R: plan5.RoleIS, N: "printer", Owner: "o", Transport: "spare", Token: token})
			a := hear(r).(*plan5.Aloha)
			synctest.Wait() // the DP holds it idle
			return c, r, a
		}

		// A session, its first bytes in the Ack's write.
		s1, r1, a := spare(grant.Token)
		defer s1.Close()
		if a.Transport != "spare" || a.Error != "" {
			t.Fatalf("the DP answered a spare with %+v, want Transport spare", a)
		}
		clients := make(chan dialResult, 1)
		go dialGreetingAsync(n, clients)
		if m, ok := hear(r1).(*plan5.Connect); !ok || m.Addr == "" || m.Token != "" {
			t.Fatalf("the DP wrote %#v on the spare, want a Connect with the client's Addr and no Token", m)
		}
		say(s1, &plan5.Ack{X: 1})
		if _, err := s1.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		r := <-clients
		if r.err != nil {
			t.Fatalf("Dial: %v", r.err)
		}
		r.c.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(r1.Buffered(), got); err != nil || string(got) != "ping" {
			t.Fatalf("the spare carried %q, %v; want the client's bytes as they are", got, err)
		}
		r.c.Close()

		// Bytes in the same write as the Ack reach the client.
		s2, r2, _ := spare(grant.Token)
		defer s2.Close()
		go dialGreetingAsync(n, clients)
		hear(r2)
		var b []byte
		b = plan5.AppendMessage(b, &plan5.Ack{X: 7})
		b = append(b, "hi"...)
		if _, err := s2.Write(b); err != nil {
			t.Fatal(err)
		}
		if r := <-clients; r.err != nil {
			t.Fatalf("Dial with the greeting in the Ack's write: %v", r.err)
		} else {
			r.c.Close()
		}

		// A refusal.
		s3, r3, _ := spare(grant.Token)
		defer s3.Close()
		go dialGreetingAsync(n, clients)
		hear(r3)
		say(s3, &plan5.Ack{X: -1, R: "printer: out of paper"})
		if r := <-clients; r.err == nil || !strings.Contains(r.err.Error(), "out of paper") {
			t.Fatalf("Dial = %v, want the server's refusal", r.err)
		}

		// A spare that sends while idle is dropped.
		s4, _, _ := spare(grant.Token)
		defer s4.Close()
		say(s4, &plan5.Ack{X: 1})
		synctest.Wait()
		if _, err := io.Copy(io.Discard, s4); err != nil {
			t.Errorf("reading a dropped spare: %v, want its end", err)
		}
		if got := dp.idleSpares(t); got != 0 {
			t.Errorf("%d spares idle, want 0", got)
		}

		// A spare that never answers (it died without a FIN): after a
		// second the open tries the control link's token path instead.
		s6, r6, _ := spare(grant.Token)
		defer s6.Close()
		go dialGreetingAsync(n, clients)
		hear(r6)
		heard := time.Now()
		ctlR := plan5.NewReader(ctl, 0)
		for {
			m := hear(ctlR)
			if c, ok := m.(*plan5.Connect); ok {
				if c.Token == "" {
					t.Fatalf("the DP fell back with %#v on the control link, want a Connect with a Token", c)
				}
				break
			}
		}
		if waited := time.Since(heard); waited != spareAnswerMin {
			t.Errorf("the DP gave up on a silent spare after %v, want %v", waited, spareAnswerMin)
		}
		say(ctl, &plan5.Ack{X: -1, R: "printer: out of toner"})
		if r := <-clients; r.err == nil || !strings.Contains(r.err.Error(), "out of toner") {
			t.Fatalf("Dial = %v, want the refusal sent on the control link", r.err)
		}

		// An unknown token.
		s5, _, a5 := spare("not-a-token")
		defer s5.Close()
		if !strings.Contains(a5.Error, "unknown spare-link token") {
			t.Errorf("the DP answered a spare with an unknown token with %+v, want a refusal", a5)
		}
	})
}

// TestConnNettestDialled holds sessions on dialled data links to net.Conn:
// TestConnNettest's tcp modes run mostly on spares.
func TestConnNettestDialled(t *testing.T) {
	dp := startDP(t, nil)
	l := listen(t, &ListenConfig{Transport: TransportTCP, Spares: -1}, dp, "nettest")
	d := Dialer{Transport: TransportYamux}
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		client, err := d.DialContext(context.Background(), dp, "nettest")
		if err != nil {
			return nil, nil, nil, err
		}
		server := <-accepted
		if server == nil {
			client.Close()
			return nil, nil, nil, net.ErrClosed
		}
		return server, client, func() { client.Close(); server.Close() }, nil
	})
}

// sparingLinks returns the tcp control links at dp that keep spares.
func (dp *DiscoverPoint) sparingLinks() []*dataLink {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var links []*dataLink
	for _, l := range dp.tcpLinks {
		if l.max > 0 {
			links = append(links, l)
		}
	}
	return links
}
