package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/nettest"

	"rtcp/internal/memnet"
	"rtcp/protocol/plan5"
)

// A server under ListenConfig.ManualAck answers each session itself: rtcp
// expose refuses one whose service refuses, and the client, a plain Plan5
// client included, reads the refusal and its reason, not a session that
// opens and then closes.

// manualTransports are the server transports, each with the way it
// carries a refusal.
var manualTransports = []struct {
	name string
	lc   ListenConfig
}{
	{"json", ListenConfig{Transport: TransportJSON}},     // Ack X=-1 on the link
	{"yamux", ListenConfig{Transport: TransportYamux}},   // Ack X=-1 on the session's stream
	{"tcp/spare", ListenConfig{Transport: TransportTCP}}, // Ack X=-1 on a spare data link
	// The control stream ends with the reason instead of a data link.
	{"tcp/dialled", ListenConfig{Transport: TransportTCP, Spares: -1}},
}

const serviceRefused = "connect: connection refused (the service behind this server)"

// serveManual accepts sessions on l and answers each by its client's name:
// "refused" is refused with serviceRefused, the others are accepted and
// echoed.
func serveManual(t *testing.T, l net.Listener) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if strings.HasPrefix(c.RemoteAddr().String(), "refused@") {
					if err := c.(*Conn).Ack(errors.New(serviceRefused)); err != nil {
						t.Errorf("refusing: %v", err)
					}
					return
				}
				if err := c.(*Conn).Ack(nil); err != nil {
					t.Errorf("accepting: %v", err)
					return
				}
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
}

// TestManualAckRefusal: Plan5's own client reads a server's refusal as Ack
// X=-1 with the server's reason, on every transport, and an accepted
// session works; an rtcp client's Dial fails with the reason.
func TestManualAckRefusal(t *testing.T) {
	for _, tr := range manualTransports {
		t.Run(tr.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testManualAckRefusal(t, tr.lc) })
		})
	}
}

func testManualAckRefusal(t *testing.T, lc ListenConfig) {
	n := memnet.New(delayDP)
	dp := new(DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(n) }()
	defer func() {
		dp.Close()
		<-served
		n.CutAll()
	}()
	lc.ManualAck = true
	lc.Dial = n.Dialer("server", 0)
	l, err := lc.Listen(context.Background(), delayDP, "svc")
	if err != nil {
		t.Fatal(err)
	}
	serveManual(t, l)
	settle() // the spares of the TCP transport are up
	if want := map[bool]int{true: defaultSpares}[lc.Transport == TransportTCP && lc.Spares >= 0]; dp.idleSpares(t) != want {
		t.Fatalf("%d spares idle at the DP, want %d", dp.idleSpares(t), want)
	}
	plain := func(name string) *legacyPeer {
		c, err := n.Dialer("client", 0)(context.Background(), "tcp", delayDP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// Plan5's code with the version of the seed: written to in the
		// legacy form, it would meet the 1 ms pauses of its writer,
		// which a synctest bubble stalls on while the DP's session
		// closes (a goroutine that waits for a mutex holds the clock).
		p := &legacyPeer{t: t, c: c, v: plan5.Version}
		p.hello(plan5.RoleIC, name)
		p.mustSend(&legacyConnect{N: "svc"})
		return p
	}

	p := plain("refused")
	if ack := expect[legacyAck](p); ack.X != -1 || !strings.Contains(ack.R, serviceRefused) || !strings.Contains(ack.R, `server "svc" refused`) {
		t.Errorf("the refused plain client got Ack %+v; want X=-1 with the server's reason", ack)
	}
	if m, err := p.recv(); err != io.EOF {
		t.Errorf("after the refusal the plain client read %#v, %v; want the end of the connection", m, err)
	}

	p = plain("welcome")
	ack := expect[legacyAck](p)
	if ack.X < 0 {
		t.Fatalf("the accepted plain client got %+v", ack)
	}
	p.mustSend(&legacyData{X: ack.X, C: []byte("ping")})
	if d := expect[legacyData](p); string(d.C) != "ping" {
		t.Errorf("the accepted plain client read %+v, want its echo", d)
	}
	p.mustSend(&legacyClose{X: ack.X})

	for _, ct := range []Transport{TransportJSON, TransportYamux} {
		d := Dialer{Name: "refused", Transport: ct, Dial: n.Dialer("client", 0)}
		c, err := d.DialContext(context.Background(), delayDP, "svc")
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, serviceRefused) {
			t.Errorf("an rtcp client (%v) dialled and got %v, %v; want a RefusedError with the server's reason", ct, c, err)
		}
	}
}

// TestManualAckOrder: on the JSON transport the Acks go to the DP in the
// order of the Connects, whatever order the application answers in, for
// the DP takes each Ack for its oldest open: answered out of order, one
// client would get the other's session.
func TestManualAckOrder(t *testing.T) {
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
		lc := ListenConfig{ManualAck: true, Dial: n.Dialer("server", 0)}
		l, err := lc.Listen(context.Background(), delayDP, "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		dialed := make(chan error, 2)
		var sessions []net.Conn
		for _, name := range []string{"alice", "bob"} {
			go func() {
				d := Dialer{Name: name, Dial: n.Dialer("client", 0)}
				c, err := d.DialContext(context.Background(), delayDP, "svc")
				if err == nil {
					defer c.Close()
					c.SetReadDeadline(time.Now().Add(time.Minute))
					buf := make([]byte, len("hello ")+len(name))
					if _, err = io.ReadFull(c, buf); err == nil && string(buf) != "hello "+name {
						err = errors.New(name + " was greeted " + string(buf))
					}
				}
				dialed <- err
			}()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sessions = append(sessions, s)
		}
		greet := func(c net.Conn) error {
			name, _, _ := strings.Cut(c.RemoteAddr().String(), "@")
			_, err := io.WriteString(c, "hello "+name)
			return err
		}
		// The second is answered first, and all is quiet: its Ack waits
		// for the first's.
		greeted := make(chan error, 1)
		go func() { greeted <- greet(sessions[1]) }()
		synctest.Wait()
		if err := greet(sessions[0]); err != nil {
			t.Fatal(err)
		}
		if err := <-greeted; err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := <-dialed; err != nil {
				t.Error(err)
			}
		}
	})
}

// TestManualAckUnanswered: a session the application never answers is
// refused after 10 s, and one behind it on the JSON transport, answered
// at once, waits for that refusal and is then accepted.
func TestManualAckUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(delayDP)
		// The DP waits longer than the server: the server's own refusal
		// is what the client reads.
		dp := &DiscoverPoint{HandshakeTimeout: time.Minute}
		served := make(chan error, 1)
		go func() { served <- dp.Serve(n) }()
		defer func() {
			dp.Close()
			<-served
			n.CutAll()
		}()
		lc := ListenConfig{ManualAck: true, Dial: n.Dialer("server", 0)}
		l, err := lc.Listen(context.Background(), delayDP, "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		type result struct {
			took time.Duration
			err  error
		}
		dial := func(name string) <-chan result {
			ch := make(chan result, 1)
			go func() {
				start := time.Now()
				d := Dialer{Name: name, Dial: n.Dialer("client", 0)}
				c, err := d.DialContext(context.Background(), delayDP, "svc")
				if c != nil {
					c.Close()
				}
				ch <- result{time.Since(start), err}
			}()
			return ch
		}
		first := dial("first")
		silent, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		second := dial("second")
		answered, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer answered.Close()
		acked := make(chan error, 1)
		go func() { acked <- answered.(*Conn).Ack(nil) }()

		var re *RefusedError
		if r := <-first; !errors.As(r.err, &re) || !strings.Contains(re.Reason, "did not answer") || r.took != 10*time.Second {
			t.Errorf("the unanswered client's Dial took %v and returned %v; want a refusal that says the server did not answer, after 10s", r.took, r.err)
		}
		if r := <-second; r.err != nil || r.took != 10*time.Second {
			t.Errorf("the second client's Dial took %v and returned %v; want its session after the first's refusal, 10s", r.took, r.err)
		}
		if err := <-acked; err != nil {
			t.Errorf("Ack: %v", err)
		}
		if _, err := silent.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("a Write on the refused session returned %v, want net.ErrClosed", err)
		}
	})
}

// TestRoundTripsManualAck: a server that answers its sessions itself, at
// once, takes as many crossings of its link from a client's Dial to its
// first byte, and to the answer of a request sent as Dial returns, as one
// whose sessions are answered for it (TestRoundTripsPerDial).
func TestRoundTripsManualAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		lc   ListenConfig
	}{
		{"json", ListenConfig{Transport: TransportJSON}},
		{"yamux", ListenConfig{Transport: TransportYamux}},
		{"tcp/spare", ListenConfig{Transport: TransportTCP}},
		{"tcp/dialled", ListenConfig{Transport: TransportTCP, Spares: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var took [2][2]time.Duration // [ManualAck][greeting, request]
			for i, manual := range []bool{false, true} {
				synctest.Test(t, func(t *testing.T) {
					lc := tc.lc
					lc.ManualAck = manual
					n, _, _, stop := spareTestNet(t, nil, lc, roundTripRTT)
					defer stop()
					d, c := dialGreeting(t, n, "")
					c.Close()
					time.Sleep(5 * roundTripRTT) // the spare used is dialled again
					synctest.Wait()
					d2, c2 := dialGreeting(t, n, "ping")
					c2.Close()
					took[i] = [2]time.Duration{d, d2}
				})
			}
			t.Logf("%s: dial to first byte %v, and to a request's answer %v (answered for the server: %v, %v)",
				tc.name, took[1][0], took[1][1], took[0][0], took[0][1])
			if took[1] != took[0] {
				t.Errorf("with ManualAck dial to first byte took %v and to a request's answer %v; without, %v and %v",
					took[1][0], took[1][1], took[0][0], took[0][1])
			}
		})
	}
}

// TestConnNettestManualAck holds sessions that the application accepted
// itself to net.Conn, on every transport.
func TestConnNettestManualAck(t *testing.T) {
	for _, tr := range manualTransports {
		t.Run(tr.name, func(t *testing.T) {
			dp := startDP(t, nil)
			lc := tr.lc
			lc.ManualAck = true
			l := listen(t, &lc, dp, "nettest")
			d := Dialer{Transport: TransportYamux}
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				accepted := make(chan net.Conn, 1)
				go func() {
					c, _ := l.Accept()
					if c != nil && c.(*Conn).Ack(nil) != nil {
						c.Close()
						c = nil
					}
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
		})
	}
}

// TestManualAckDeadline: a read deadline set before the session is
// accepted holds for the Read that accepts it, on every transport (a
// dialled data link gets it once it is up).
func TestManualAckDeadline(t *testing.T) {
	for _, tr := range manualTransports {
		t.Run(tr.name, func(t *testing.T) {
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
				lc := tr.lc
				lc.ManualAck = true
				lc.Dial = n.Dialer("server", 0)
				l, err := lc.Listen(context.Background(), delayDP, "svc")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				settle()
				dialed := make(chan net.Conn, 1)
				go func() {
					d := Dialer{Dial: n.Dialer("client", 0)}
					c, err := d.DialContext(context.Background(), delayDP, "svc")
					if err != nil {
						t.Errorf("Dial: %v", err)
					}
					dialed <- c
				}()
				s, err := l.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				start := time.Now()
				s.SetReadDeadline(start.Add(time.Second))
				_, err = s.Read(make([]byte, 1))
				if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != time.Second {
					t.Errorf("the Read that accepted the session returned %v after %v; want os.ErrDeadlineExceeded after 1s", err, time.Since(start))
				}
				if c := <-dialed; c != nil {
					c.Close()
				}
			})
		})
	}
}
