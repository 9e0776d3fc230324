package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
)

// Round trips per dial at a distance (issue 13, item 3): how many times
// something crosses the server's link, from a client's Dial to the first
// byte back from the server. The server's links to the DP cross a path of
// round trip rtt, the client sits next to the DP, and the bubble's clock
// counts: every step but a crossing takes no time on it, so the time from
// Dial to the first byte is exactly the crossings' half round trips.

const roundTripRTT = 100 * time.Millisecond

// delayDP is the address of the DP on a memnet.Listener of a round trip.
const delayDP = "dp.delay:9000"

// spareTestNet runs dp (nil: a new one) on a memnet.Listener and a server named
// "printer" configured by lc whose links cross rtt, whose sessions greet their client
// with "hi" at once and then echo. stop ends it all.
func spareTestNet(t *testing.T, dp *DiscoverPoint, lc ListenConfig, rtt time.Duration) (n *memnet.Listener, _ *DiscoverPoint, l net.Listener, stop func()) {
	t.Helper()
	n = memnet.New(delayDP)
	if dp == nil {
		dp = new(DiscoverPoint)
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(n) }()
	lc.Dial = n.Dialer("server", rtt)
	l, err := lc.Listen(context.Background(), delayDP, "printer")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan []net.Conn, 1)
	go func() {
		var cs []net.Conn
		defer func() { accepted <- cs }()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			cs = append(cs, c)
			go func() {
				c.Write([]byte("hi"))
				io.Copy(c, c)
			}()
		}
	}()
	// Let the links and their spares come up: a few round trips.
	time.Sleep(5 * rtt)
	synctest.Wait()
	return n, dp, l, func() {
		l.Close()
		for _, c := range <-accepted {
			c.Close()
		}
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("Serve returned %v, want ErrDiscoverPointClosed", err)
		}
		n.CutAll()
	}
}

// dialGreeting dials "printer" from next to the DP and returns the time to
// the server's first byte. With ping, the client writes it as soon as Dial
// returns, and the time is to its echo.
func dialGreeting(t *testing.T, n *memnet.Listener, ping string) (time.Duration, net.Conn) {
	t.Helper()
	d := &Dialer{Transport: TransportYamux, Dial: n.Dialer("client", 0)}
	start := time.Now()
	c, err := d.DialContext(context.Background(), delayDP, "printer")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Write([]byte(ping)); err != nil {
		t.Fatal(err)
	}
	want := "hi" + ping
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q, %v; want %q", buf, err, want)
	}
	return time.Since(start), c
}

// idleSpares counts the spare data links idle at dp, and checks them
// against the DP's books.
func (dp *DiscoverPoint) idleSpares(t *testing.T) int {
	t.Helper()
	links := dp.sparingLinks()
	n, held := 0, 0
	for _, l := range links {
		l.mu.Lock()
		n += len(l.idle)
		held += l.held
		l.mu.Unlock()
	}
	dp.mu.Lock()
	counted := 0
	for _, k := range dp.counts.spares {
		counted += k
	}
	dp.mu.Unlock()
	if held != n || counted != n {
		t.Errorf("%d spares idle, but the links hold %d and the DP counts %d", n, held, counted)
	}
	return n
}

// TestRoundTripsPerDial measures every transport. The TCP transport with
// a spare ready takes one round trip, as two plain relays do; the others
// are logged (go test -v -run TestRoundTripsPerDial), and so is a request
// the client sends as soon as Dial returns: it leaves the DP only after
// the server's Ack, so its answer comes a round trip after the greeting.
func TestRoundTripsPerDial(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lc            ListenConfig
		want, wantReq float64 // round trips; 0: only logged
		spares        bool
	}{
		{"json", ListenConfig{Transport: TransportJSON}, 0, 0, false},
		{"yamux", ListenConfig{Transport: TransportYamux}, 0, 0, false},
		{"tcp/spare", ListenConfig{Transport: TransportTCP}, 1, 2, true},
		{"tcp/dialled", ListenConfig{Transport: TransportTCP, Spares: -1}, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, dp, _, stop := spareTestNet(t, nil, tc.lc, roundTripRTT)
				defer stop()
				if got, want := dp.idleSpares(t), map[bool]int{true: defaultSpares}[tc.spares]; got != want {
					t.Fatalf("%d spares idle at the DP, want %d", got, want)
				}
				took, c := dialGreeting(t, n, "")
				defer c.Close()
				rtts := float64(took) / float64(roundTripRTT)
				t.Logf("%s: dial to first byte %v = %.1f round trips (%.0f crossings of the server's link)", tc.name, took, rtts, 2*rtts)
				if tc.want != 0 && rtts != tc.want {
					t.Errorf("dial to first byte took %.2f round trips, want %v", rtts, tc.want)
				}
				time.Sleep(5 * roundTripRTT) // the spare used is dialled again
				synctest.Wait()
				took, c2 := dialGreeting(t, n, "ping")
				defer c2.Close()
				rtts = float64(took) / float64(roundTripRTT)
				t.Logf("%s: dial, request and its answer %v = %.1f round trips", tc.name, took, rtts)
				if tc.wantReq != 0 && rtts != tc.wantReq {
					t.Errorf("dial, request and answer took %.2f round trips, want %v", rtts, tc.wantReq)
				}
			})
		})
	}
}

// TestRoundTripsPerDialFromAfar: the client is a round trip from the DP
// (the server next to it), and each dial to first byte is counted in the
// client's round trips: one for the TCP handshake and one for the Aloha
// with the Connect and the DP's answer with the Ack and the server's
// first bytes. A new Dialer (as rtcp.Dial and rtcp.DialContext make for
// each call) takes no more than one kept for many dials, whichever
// transport it asks for.
func TestRoundTripsPerDialFromAfar(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport Transport
		kept      bool // the second dial of one Dialer, not the first of a new one
	}{
		{"json/new", TransportJSON, false}, // rtcp.Dial's Dialer
		{"json/kept", TransportJSON, true},
		{"raw/new", TransportYamux, false},
		{"raw/kept", TransportYamux, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, _, _, stop := spareTestNet(t, nil, ListenConfig{Transport: TransportYamux}, 0)
				defer stop()
				d := &Dialer{Transport: tc.transport, Dial: n.Dialer("client", roundTripRTT)}
				if tc.kept {
					c, err := d.DialContext(context.Background(), delayDP, "printer")
					if err != nil {
						t.Fatalf("first Dial: %v", err)
					}
					c.Close()
				}
				start := time.Now()
				c, err := d.DialContext(context.Background(), delayDP, "printer")
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				buf := make([]byte, 2)
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
					t.Fatalf("read %q, %v; want \"hi\"", buf, err)
				}
				rtts := float64(time.Since(start)) / float64(roundTripRTT)
				t.Logf("%s: dial to first byte = %.1f round trips", tc.name, rtts)
				if rtts != 2 {
					t.Errorf("dial to first byte took %.2f round trips, want 2 (the TCP handshake, then the Aloha with the Connect)", rtts)
				}
			})
		})
	}
}
