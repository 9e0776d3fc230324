package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"rtcp/internal/delay"
	"rtcp/internal/flowtest"
	"rtcp/internal/natlab"
)

// directLab is a DP on the public network of a natlab.Lab, a server and
// a client each on a host of its own, through the public API with Direct
// on both sides (the sockets each side makes are made in its namespace).
type directLab struct {
	lab            *natlab.Lab
	dp             *DiscoverPoint
	addr           string
	server, client *natlab.Host
	l              *Listener
	accepted       chan *Conn // the server's sessions
	events         chan Event // the server's EventDirect
	dpEnded        chan bool  // the DP's brokered sessions as they end: moved or not
}

// newDirectLab builds the lab, or skips the test where it cannot (natlab:
// root, ip, nft), with an echo server. lc and dp may be nil.
func newDirectLab(t testing.TB, server, client natlab.NAT, dp *DiscoverPoint, lc *ListenConfig) *directLab {
	x := newDirectLabOnly(t, server, client, dp, lc)
	x.echo(t)
	return x
}

// newDirectLabOnly is newDirectLab without the echo: the test accepts.
func newDirectLabOnly(t testing.TB, server, client natlab.NAT, dp *DiscoverPoint, lc *ListenConfig) *directLab {
	t.Helper()
	return newDirectLabAt(t, server, client, dp, lc, 0)
}

// newDirectLabAt is newDirectLabOnly with the DP at a distance: with rtt
// > 0 both sides reach it through a delay.Relay of that round trip on the
// public network, which names each connection's client in a PROXY
// protocol header (the DP trusts RouterAddr's), so that the DP sees, and
// brokers, the NATs' addresses as before, while the direct path between
// the hosts has no delay added: a relay far away, the peers near each
// other, where a direct path pays most.
func newDirectLabAt(t testing.TB, server, client natlab.NAT, dp *DiscoverPoint, lc *ListenConfig, rtt time.Duration) *directLab {
	t.Helper()
	lab := natlab.New(t)
	x := &directLab{lab: lab, server: lab.AddHost(server), client: lab.AddHost(client),
		accepted: make(chan *Conn, 16), events: make(chan Event, 1024), dpEnded: make(chan bool, 1024)}
	if dp == nil {
		dp = new(DiscoverPoint)
	}
	dp.brokeredEnded = func(moved bool) {
		select {
		case x.dpEnded <- moved:
		default:
		}
	}
	x.dp = dp
	if rtt > 0 {
		dp.ProxyProtocolFrom = []netip.Prefix{netip.PrefixFrom(natlab.RouterAddr, 32)}
	}
	x.addr = x.serveDP(t, dp)
	if rtt > 0 {
		x.addr = x.delayTo(t, x.addr, rtt, true)
	}
	if lc == nil {
		lc = &ListenConfig{Transport: TransportYamux}
	}
	lc.Direct = true
	lc.netns = x.server.Do
	lc.OnEvent = func(e Event) {
		if e.Kind == EventDirect {
			select {
			case x.events <- e:
			default:
			}
		}
	}
	l, err := lc.Listen(context.Background(), x.addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	x.l = l.(*Listener)
	t.Cleanup(func() { l.Close() })
	return x
}

// serveDP runs dp on the public network until the test ends, and returns
// its address; a DP of a cluster (with a Registry) advertises it.
func (x *directLab) serveDP(t testing.TB, dp *DiscoverPoint) string {
	t.Helper()
	var dl net.Listener
	err := x.lab.Router().Do(func() (err error) {
		dl, err = net.Listen("tcp4", netip.AddrPortFrom(natlab.RouterAddr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if dp.Registry != nil && dp.Advertise == "" {
		dp.Advertise = dl.Addr().String()
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(dl) }()
	t.Cleanup(func() {
		dp.Close()
		<-served
	})
	return dl.Addr().String()
}

// delayTo runs a delay.Relay of round trip rtt to addr (the DP's), on the
// public network, until the test ends, and returns its address. With
// proxy it writes a PROXY protocol header naming each connection's
// client.
func (x *directLab) delayTo(t testing.TB, addr string, rtt time.Duration, proxy bool) string {
	t.Helper()
	pub := x.lab.Router()
	var l net.Listener
	err := pub.Do(func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(natlab.RouterAddr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &delay.Relay{To: addr, RTT: rtt,
		Dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = pub.Do(func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	if proxy {
		r.Header = func(a net.Conn) []byte {
			h, _ := AppendProxyHeader(nil, 1, a.RemoteAddr(), a.LocalAddr())
			return h
		}
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(l) }()
	t.Cleanup(func() {
		r.Close()
		<-served
	})
	return l.Addr().String()
}

// echo serves the lab's listener: each session echoes, and goes to
// accepted.
func (x *directLab) echo(t testing.TB) {
	flowtest.ServeEach(t, x.l, func(c net.Conn) {
		rc := c.(*Conn)
		select {
		case x.accepted <- rc:
		default:
		}
		if tc := rc.Unwrap(); tc != nil {
			io.Copy(tc, tc) // spliced, as the plain TCP echo's is
			tc.CloseWrite()
			return
		}
		io.Copy(c, c)
		rc.CloseWrite()
	})
}

// dialer returns a Dialer of the client's host.
func (x *directLab) dialer() *Dialer {
	return &Dialer{Direct: true, netns: x.client.Do}
}

func (x *directLab) dial(t testing.TB, d *Dialer) *Conn {
	t.Helper()
	c, err := d.DialContext(context.Background(), x.addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Conn)
}

// moveAndEnd moves the client's session c (a punch, then 4 MiB each way
// through the echo), checks that both sides' sessions run direct, and
// closes it: x.dp, which holds the server's link, sees it end moved.
func (x *directLab) moveAndEnd(t *testing.T, c *Conn) {
	t.Helper()
	defer c.Close()
	punched(c)
	echoCheck(t, c, 4<<20) // moves the session
	if !c.Direct() {
		t.Fatalf("the session is relayed: %v", c.DirectError())
	}
	if sc := <-x.accepted; !sc.Direct() {
		t.Errorf("the server's session is relayed: %v", sc.DirectError())
	}
	c.Close()
	if moved := <-x.dpEnded; !moved {
		t.Error("the DP that holds the server's link saw the session end unmoved")
	}
}

// TestDirectNAT: behind NATs that keep a port's mapping toward every
// destination, or with one side public, every session goes direct.
func TestDirectNAT(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, client natlab.NAT
		transport      Transport
	}{
		{"both behind NATs", natlab.EndpointIndependent, natlab.EndpointIndependent, TransportYamux},
		{"both behind NATs/json", natlab.EndpointIndependent, natlab.EndpointIndependent, TransportJSON},
		{"both behind NATs/tcp", natlab.EndpointIndependent, natlab.EndpointIndependent, TransportTCP},
		{"public server", natlab.Public, natlab.EndpointIndependent, TransportYamux},
		{"public client", natlab.EndpointIndependent, natlab.Public, TransportYamux},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newDirectLab(t, tc.server, tc.client, nil, &ListenConfig{Transport: tc.transport})
			x.moveAndEnd(t, x.dial(t, x.dialer()))
			if e := <-x.events; e.Err != nil {
				t.Errorf("EventDirect: %v", e.Err)
			}
			st := x.dp.Stats()
			if st.DirectBrokered != 1 || st.DirectMoved != 1 || st.DirectRelayed != 0 {
				t.Errorf("Stats: %d brokered, %d moved, %d relayed; want 1, 1, 0", st.DirectBrokered, st.DirectMoved, st.DirectRelayed)
			}
			// Both sides' reports: 4 MiB each way, none of it relayed.
			if st.DirectBytes != 2*(4<<20) {
				t.Errorf("Stats: %d direct bytes reported, want %d", st.DirectBytes, 2*(4<<20))
			}
			// Each direction's moved record.
			if carried := st.BytesToServers + st.BytesToClients; carried > 2 {
				t.Errorf("the DP carried %d bytes of a session that moved before its first byte", carried)
			}
		})
	}
}

// TestDirectNATCluster: the server, behind its NAT, holds its link on
// DP1; the client, behind its own, reaches DP3, which carries the session
// to DP1 over the hop with the cluster's key. DP1 brokers it, between the
// server's address as DP1 saw it and the client's as DP3 saw it, and the
// session moves as through one DP; DP3 relayed the two moved records and
// the client's report, and counts nothing direct.
func TestDirectNATCluster(t *testing.T) {
	reg := new(MemoryRegistry)
	pol := func() *Policy {
		return &Policy{Keys: clusterKeys(), DPs: []string{clusterCred.Key}, AnonymousClients: true, AnonymousServers: true}
	}
	x := newDirectLab(t, natlab.EndpointIndependent, natlab.EndpointIndependent, &DiscoverPoint{Registry: reg, Policy: pol()}, nil)
	dp3 := &DiscoverPoint{Registry: reg, Policy: pol(), Peer: &Dialer{Credential: clusterCred, netns: x.lab.Router().Do}}
	addr3 := x.serveDP(t, dp3)
	d := x.dialer()
	cc, err := d.DialContext(context.Background(), addr3, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	x.moveAndEnd(t, cc.(*Conn))
	if st := x.dp.Stats(); st.DirectBrokered != 1 || st.DirectMoved != 1 || st.DirectBytes != 2*(4<<20) {
		t.Errorf("DP1's Stats: %d brokered, %d moved, %d direct bytes; want 1, 1, %d", st.DirectBrokered, st.DirectMoved, st.DirectBytes, 2*(4<<20))
	}
	if st := dp3.Stats(); st.DirectBrokered != 0 || st.DirectBytes != 0 || st.SessionsTotal != 1 {
		t.Errorf("DP3's Stats: %d brokered, %d direct bytes, %d sessions; want 0, 0, 1", st.DirectBrokered, st.DirectBytes, st.SessionsTotal)
	}
}

// TestDirectNATConn holds a direct session, and a brokered session that
// stays on the relay, to net.Conn's contract (nettest.TestConn): the
// server's Conn is c1, which nettest drives hardest.
func TestDirectNATConn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nat    natlab.NAT
		direct bool
	}{
		{"direct", natlab.EndpointIndependent, true},
		{"relayed", natlab.RandomPorts, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newDirectLabOnly(t, tc.nat, tc.nat, nil, nil)
			d := x.dialer()
			d.DirectTimeout = 100 * time.Millisecond
			var moved atomic.Int32 // sessions that ended direct
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				client, server, err := dialAccepted(d, x.l, x.addr, "printer-7")
				if err != nil {
					return nil, nil, nil, err
				}
				if client.(*Conn).Direct() {
					t.Error("the client's session is direct before its first byte")
				}
				// The session starts relayed and moves, in the test,
				// once the punch is up.
				return server, client, func() {
					if client.(*Conn).Direct() {
						moved.Add(1)
					}
					client.Close()
					server.Close()
				}, nil
			})
			if got := moved.Load(); (got > 0) != tc.direct {
				t.Errorf("%d sessions moved to the direct path; want some: %v", got, tc.direct)
			}
		})
	}
}

// TestDirectNATMany: punching on endpoint-independent NATs succeeds every
// time: 1000 dials with RTCP_TEST_SLOW set, 100 without.
func TestDirectNATMany(t *testing.T) {
	n := 100
	if os.Getenv("RTCP_TEST_SLOW") != "" {
		n = 1000
	}
	x := newDirectLab(t, natlab.EndpointIndependent, natlab.EndpointIndependent, nil, nil)
	d := x.dialer()
	var slowest time.Duration
	for i := range n {
		began := time.Now()
		c := x.dial(t, d)
		punched(c)
		slowest = max(slowest, time.Since(began))
		echoCheck(t, c, 100)
		if !c.Direct() {
			c.Close()
			t.Fatalf("dial %d of %d is relayed: %v", i+1, n, c.DirectError())
		}
		c.Close()
		<-x.accepted
		if moved := <-x.dpEnded; !moved {
			t.Fatalf("dial %d of %d: the DP saw the session end unmoved", i+1, n)
		}
	}
	if st := x.dp.Stats(); st.DirectBrokered != uint64(n) || st.DirectMoved != uint64(n) {
		t.Errorf("Stats: %d sessions brokered, %d moved; want %d", st.DirectBrokered, st.DirectMoved, n)
	}
	t.Logf("%d dials direct; the slowest dial and punch took %v", n, slowest)
}

// TestDirectNATRandomPorts: behind NATs that pick a new port per
// destination no punch comes up; the session starts on the relay at once,
// stays there with no error, and carries its bytes.
func TestDirectNATRandomPorts(t *testing.T) {
	x := newDirectLab(t, natlab.RandomPorts, natlab.RandomPorts, nil, nil)
	d := x.dialer()
	d.DirectTimeout = 300 * time.Millisecond
	began := time.Now()
	c := x.dial(t, d)
	took := time.Since(began)
	defer c.Close()
	if took >= d.DirectTimeout {
		t.Errorf("the dial took %v: it waited for the punch (DirectTimeout %v)", took, d.DirectTimeout)
	}
	echoCheck(t, c, 1<<20) // on the relay, framed, while the punch runs
	punched(c)
	if c.Direct() || c.DirectError() == nil {
		t.Fatalf("Direct %v, DirectError %v: want a relayed session that says why", c.Direct(), c.DirectError())
	}
	if sc := <-x.accepted; sc.Direct() {
		t.Error("the server's session says direct")
	}
	if e := <-x.events; e.Err == nil {
		t.Error("EventDirect without an error for a relayed session")
	}
	c.Close()
	if moved := <-x.dpEnded; moved {
		t.Error("the DP saw a relayed session move")
	}
	st := x.dp.Stats()
	if st.DirectBrokered != 1 || st.DirectMoved != 0 || st.DirectRelayed != 1 || st.DirectBytes != 0 {
		t.Errorf("Stats: %d brokered, %d moved, %d relayed, %d direct bytes; want 1, 0, 1, 0", st.DirectBrokered, st.DirectMoved, st.DirectRelayed, st.DirectBytes)
	}
}

// TestDirectNATMove: a session starts on the relay and moves to the
// direct path with bytes flowing both ways (the client writes on, the
// server echoes on), none lost, duplicated or reordered: 10 sessions, 300
// with RTCP_TEST_SLOW set.
func TestDirectNATMove(t *testing.T) {
	n := 10
	if os.Getenv("RTCP_TEST_SLOW") != "" {
		n = 300
	}
	x := newDirectLab(t, natlab.EndpointIndependent, natlab.EndpointIndependent, nil, nil)
	d := x.dialer()
	for i := range n {
		c := x.dial(t, d)
		if c.Direct() {
			t.Fatal("the session is direct before its first byte")
		}
		punch := c.s.(*moveConn).punchDone
		// The client writes until its punch has ended and 256 KiB more
		// have crossed (the move, if the punch came up, is among them).
		errc := make(chan error, 1)
		sizec := make(chan int64, 1)
		go func() {
			buf := make([]byte, 4096)
			var off, after int64
			for after < 256<<10 {
				for j := range buf {
					buf[j] = pattern(off + int64(j))
				}
				if _, err := c.Write(buf); err != nil {
					errc <- err
					return
				}
				off += int64(len(buf))
				select {
				case <-punch:
					after += int64(len(buf))
				default:
				}
			}
			sizec <- off
			errc <- c.CloseWrite()
		}()
		got := make([]byte, 5000)
		var off int64
		for {
			k, err := c.Read(got)
			for j := range k {
				if got[j] != pattern(off+int64(j)) {
					t.Fatalf("session %d: byte %d differs: lost, duplicated or reordered", i, off+int64(j))
				}
			}
			off += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("session %d: %v after %d bytes", i, err, off)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if size := <-sizec; off != size {
			t.Fatalf("session %d: %d bytes back, want %d", i, off, size)
		}
		if !c.Direct() {
			t.Errorf("session %d stayed on the relay: %v", i, c.DirectError())
		}
		c.Close()
		<-x.accepted
	}
}

// TestDirectNATDialTime: a Dialer with Direct gets its first byte back
// about as fast as one without, behind NATs that allow no direct path and
// behind NATs where the punch comes up (it runs while the first byte
// crosses the relay): the session starts on the relay at once. It logs
// both medians, of dials interleaved.
func TestDirectNATDialTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		nat  natlab.NAT
	}{
		{"no path", natlab.RandomPorts},
		{"punched", natlab.EndpointIndependent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newDirectLab(t, tc.nat, tc.nat, nil, nil)
			on := x.dialer()
			off := &Dialer{Transport: TransportYamux, netns: x.client.Do}
			const n = 30
			var took [2][]time.Duration
			for range n {
				for k, d := range []*Dialer{on, off} {
					took[k] = append(took[k], firstByte(t, d, x.addr, nil))
					if k == 0 {
						<-x.accepted
					}
				}
			}
			for k := range took {
				slices.Sort(took[k])
			}
			p50 := func(k int) time.Duration { return took[k][n/2] }
			t.Logf("dial to first byte, p50 of %d: Direct on %v (max %v), off %v (max %v): %.2fx", n, p50(0), took[0][n-1], p50(1), took[1][n-1], float64(p50(0))/float64(p50(1)))
			if p50(0) >= DefaultDirectTimeout/2 {
				t.Errorf("with Direct, dial to first byte takes %v: it waits for the punch", p50(0))
			}
		})
	}
}

// TestDirectNATNoDirect: a DP that does not broker leaves every session
// on the relay, and says nothing of it.
func TestDirectNATNoDirect(t *testing.T) {
	x := newDirectLab(t, natlab.EndpointIndependent, natlab.EndpointIndependent, &DiscoverPoint{NoDirect: true}, nil)
	c := x.dial(t, x.dialer())
	defer c.Close()
	if c.Direct() || c.DirectError() != nil {
		t.Fatalf("Direct %v, DirectError %v: want a relayed session, not brokered", c.Direct(), c.DirectError())
	}
	echoCheck(t, c, 1<<20)
	if st := x.dp.Stats(); st.DirectBrokered != 0 {
		t.Errorf("Stats: %d brokered, want 0", st.DirectBrokered)
	}
}

// TestDirectNATBlackhole: a direct path that goes silent mid-session
// fails the session's reads with an error on both sides, never io.EOF.
func TestDirectNATBlackhole(t *testing.T) {
	const keepAlive = 200 * time.Millisecond
	x := newDirectLab(t, natlab.EndpointIndependent, natlab.EndpointIndependent, nil,
		&ListenConfig{Transport: TransportYamux, KeepAlive: keepAlive})
	d := x.dialer()
	d.KeepAlive = keepAlive
	c := x.dial(t, d)
	defer c.Close()
	punched(c)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !c.Direct() {
		t.Fatalf("the session is relayed: %v", c.DirectError())
	}
	<-x.accepted
	x.client.Blackhole(t, x.server.PublicAddr)
	began := time.Now()
	c.Write([]byte("lost")) // unacknowledged data: TCP_USER_TIMEOUT
	_, err := c.Read(buf)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read on a blackholed direct path: %v; want an error, not io.EOF", err)
	}
	t.Logf("the client's Read failed after %v: %v", time.Since(began), err)
}

// rawEcho serves an echo on the server's host, behind a port forward on
// its NAT, and returns a dial of it from the client's host: plain TCP
// between the same two namespaces, the baseline of a direct session.
func (x *directLab) rawEcho(t testing.TB) func() (net.Conn, error) {
	var l net.Listener
	err := x.server.Do(func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(x.server.Addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).AddrPort().Port()
	x.server.Forward(t, port)
	flowtest.Echo(t, l)
	to := netip.AddrPortFrom(x.server.PublicAddr, port).String()
	return func() (c net.Conn, err error) {
		err = x.client.Do(func() (err error) {
			c, err = net.Dial("tcp4", to)
			return err
		})
		return c, err
	}
}

// BenchmarkDirect compares a direct session between two hosts behind
// endpoint-independent NATs with plain TCP between the same namespaces:
// dial (a new session and its first byte back, p50-ns the median; also
// for a relayed session), stream (64 KiB writes echoed back, read as they
// come) and echo (one byte there and back; p50-ns is the median round
// trip).
func BenchmarkDirect(b *testing.B) {
	x := newDirectLab(b, natlab.EndpointIndependent, natlab.EndpointIndependent, nil, nil)
	rawDial := x.rawEcho(b)
	type kind struct {
		name string
		dial func() (net.Conn, error)
	}
	// One Dialer for each kind, as a program keeps one: a Dialer learns
	// on its first dial that the DP offers the raw leg, and sends its
	// Connect with its Aloha from then on (one round trip less).
	on := x.dialer()
	dials := []kind{
		{name: "direct", dial: func() (net.Conn, error) {
			c := x.dial(b, on)
			punched(c)
			one := []byte{1}
			if _, err := c.Write(one); err != nil { // moves the session
				c.Close()
				return nil, err
			}
			if _, err := io.ReadFull(c, one); err != nil {
				c.Close()
				return nil, err
			}
			if !c.Direct() {
				c.Close()
				return nil, c.DirectError()
			}
			return c, nil
		}},
		// Starts relayed, moves later (back to back: each dial while
		// the previous session's punch ends).
		{name: "direct-on", dial: func() (net.Conn, error) {
			return x.dial(b, on), nil
		}},
		{name: "raw-tcp", dial: rawDial},
	}
	relayed := &Dialer{Transport: TransportYamux, netns: x.client.Do}
	dials = append(dials, kind{name: "relayed", dial: func() (net.Conn, error) {
		return relayed.DialContext(context.Background(), x.addr, "printer-7")
	}})
	// A session that starts relayed and moves later, and a relayed one,
	// dialed in turn, so that both meet the same load: the medians of
	// each and their ratio (the target: at most 1).
	b.Run("dial/direct-on-vs-relayed", func(b *testing.B) {
		var took [2][]time.Duration
		near := 0 // dials with Direct whose Dialer knew the DP near
		for range b.N {
			if on.known.near(x.addr) {
				near++
			}
			for k, d := range []*Dialer{on, relayed} {
				took[k] = append(took[k], firstByte(b, d, x.addr, nil))
			}
		}
		b.ReportMetric(float64(near)/float64(b.N), "near/op")
		for k := range took {
			slices.Sort(took[k])
		}
		on, off := took[0][len(took[0])/2], took[1][len(took[1])/2]
		b.ReportMetric(float64(on.Nanoseconds()), "on-p50-ns")
		b.ReportMetric(float64(off.Nanoseconds()), "relayed-p50-ns")
		b.ReportMetric(float64(on)/float64(off), "on/relayed")
	})
	for _, d := range dials {
		// A new session and one byte there and back: the time to first
		// byte of each kind of dial.
		b.Run("dial/"+d.name, func(b *testing.B) {
			one := make([]byte, 1)
			took := make([]time.Duration, 0, b.N)
			for range b.N {
				began := time.Now()
				c, err := d.dial()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(began))
				c.Close()
			}
			// The median: on this shared machine a few dials that
			// stall for milliseconds move the mean (ns/op).
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
		})
		if d.name == "relayed" || d.name == "direct-on" {
			continue
		}
		b.Run("stream/"+d.name, func(b *testing.B) {
			c, err := d.dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			done := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.Discard, c, int64(b.N)*int64(len(buf)))
				done <- err
			}()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
		b.Run("echo/"+d.name, func(b *testing.B) {
			c, err := d.dial()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			one := make([]byte, 1)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				began := time.Now()
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(began))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
		})
	}
}

// BenchmarkDirectDialAtDistance: dial to first byte back with Direct on
// (the session starts relayed; the punch runs beside it) against a
// relayed dial, one of each in turn, with the DP a round trip away from
// both endpoint-independent NATs and the hosts near each other
// (newDirectLabAt). The lab's own dial (BenchmarkDirect) takes about a
// millisecond, all of it CPU on two shared cores, where the punch's
// connects and proof compete with the first byte; here the first byte
// waits for round trips, as on a real network.
//
// Reported, medians: each arm's dial to first byte and their ratio
// (on/relayed; the target: at most 1); the time from the start
// of a dial with Direct on to its proven direct connection, in round
// trips to the DP (to-direct-rtts; the target: at most 3), split into
// the dial's return (dialed-rtts: the Ack) and the punch after it
// (punch-us): a session can move no sooner than its Dial returns; the
// server's punch, from the start of the dial to its proven connection
// (proven-rtts: both sides' punches start at the open, the client's at
// the DP's early offer); the share of those sessions that moved (a
// Write each way after the first byte).
// And the lab alone, in turn with the two: plain TCP from the client's
// host through a delay.Relay of the same round trip to an echo on the
// public network, its connect and first byte back (lab-first-rtts) and
// a further byte there and back (lab-echo-rtts), both one round trip
// on a real link; to-direct-lab-rtts is to-direct in those measured
// round trips: what rtcp costs, the lab's own delays taken out.
func BenchmarkDirectDialAtDistance(b *testing.B) {
	for _, rtt := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond} {
		b.Run("rtt="+rtt.String(), func(b *testing.B) {
			x := newDirectLabAt(b, natlab.EndpointIndependent, natlab.EndpointIndependent, nil, nil, rtt)
			x.echo(b)
			labDial := x.labEcho(b, rtt)
			on, relayed := x.dialer(), &Dialer{Transport: TransportYamux, netns: x.client.Do}
			var took, dialedAt [2][]time.Duration // Direct on, relayed
			var toDirect, punch, proven, labFirst, labEcho []time.Duration
			moved := 0
			one := make([]byte, 1)
			for range b.N {
				for k, d := range []*Dialer{on, relayed} {
					began := time.Now()
					// The server's session, accepted at the open: when
					// its punch ends (the relayed one's is drained).
					serverProven := make(chan time.Duration, 1)
					go func() {
						sc := <-x.accepted
						punched(sc)
						serverProven <- time.Since(began)
					}()
					c, err := d.DialContext(context.Background(), x.addr, "printer-7")
					if err != nil {
						b.Fatal(err)
					}
					ret := time.Since(began)
					dialedAt[k] = append(dialedAt[k], ret)
					rc := c.(*Conn)
					clientProven := make(chan time.Duration, 1)
					if k == 0 {
						go func() {
							punched(rc)
							clientProven <- time.Since(began)
						}()
					}
					if _, err := c.Write(one); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, one); err != nil {
						b.Fatal(err)
					}
					took[k] = append(took[k], time.Since(began))
					sp := <-serverProven
					if k == 0 {
						p := <-clientProven
						toDirect = append(toDirect, p)
						punch = append(punch, p-ret)
						proven = append(proven, sp)
						// A Write each way moves the session.
						c.Write(one)
						io.ReadFull(c, one)
						if rc.Direct() {
							moved++
						}
					}
					c.Close()
				}
				first, echo := labDial(b)
				labFirst, labEcho = append(labFirst, first), append(labEcho, echo)
			}
			p50 := func(t []time.Duration) time.Duration {
				slices.Sort(t)
				return t[len(t)/2]
			}
			// Where a difference is: Dial's return, and the byte there
			// and back after it (on-echo-us: the move at the first
			// Write, where the punch was over), each arm's p50. Before
			// p50 sorts took.
			var echoed [2][]time.Duration
			for k := range took {
				for i, d := range took[k] {
					echoed[k] = append(echoed[k], d-dialedAt[k][i])
				}
			}
			onP50, offP50 := p50(took[0]), p50(took[1])
			rtts := func(d time.Duration) float64 { return float64(d) / float64(rtt) }
			b.ReportMetric(float64(onP50.Nanoseconds()), "on-p50-ns")
			b.ReportMetric(float64(offP50.Nanoseconds()), "relayed-p50-ns")
			b.ReportMetric(float64(onP50)/float64(offP50), "on/relayed")
			b.ReportMetric(float64(p50(dialedAt[0]).Microseconds()), "on-dial-us")
			b.ReportMetric(float64(p50(dialedAt[1]).Microseconds()), "relayed-dial-us")
			b.ReportMetric(float64(p50(echoed[0]).Microseconds()), "on-echo-us")
			b.ReportMetric(float64(p50(echoed[1]).Microseconds()), "relayed-echo-us")
			b.ReportMetric(rtts(p50(toDirect)), "to-direct-rtts")
			b.ReportMetric(rtts(p50(dialedAt[0])), "dialed-rtts")
			b.ReportMetric(float64(p50(punch).Microseconds()), "punch-us")
			b.ReportMetric(rtts(p50(proven)), "proven-rtts")
			b.ReportMetric(float64(moved)/float64(b.N), "moved/op")
			b.ReportMetric(rtts(p50(labFirst)), "lab-first-rtts")
			b.ReportMetric(rtts(p50(labEcho)), "lab-echo-rtts")
			b.ReportMetric(float64(p50(toDirect))/float64(p50(labEcho)), "to-direct-lab-rtts")
		})
	}
}

// labEcho serves an echo on the public network behind a delay.Relay of
// round trip rtt, and returns a measure of the lab alone: from the
// client's host, a connect and a byte there and back (first), then
// another byte there and back (echo).
func (x *directLab) labEcho(tb testing.TB, rtt time.Duration) func(testing.TB) (first, echo time.Duration) {
	var l net.Listener
	err := x.lab.Router().Do(func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(natlab.RouterAddr, 0).String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	flowtest.Echo(tb, l)
	to := x.delayTo(tb, l.Addr().String(), rtt, false)
	return func(tb testing.TB) (first, echo time.Duration) {
		one := make([]byte, 1)
		began := time.Now()
		var c net.Conn
		err := x.client.Do(func() (err error) {
			c, err = net.Dial("tcp4", to)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		defer c.Close()
		for _, t := range []*time.Duration{&first, &echo} {
			if _, err := c.Write(one); err != nil {
				tb.Fatal(err)
			}
			if _, err := io.ReadFull(c, one); err != nil {
				tb.Fatal(err)
			}
			*t = time.Since(began)
			began = time.Now()
		}
		return first, echo
	}
}

// firstByte dials printer-7 at addr with d, sends a byte, and returns how
// long it took until the echo came back; then it calls after, if set,
// with the session, which it closes.
func firstByte(tb testing.TB, d *Dialer, addr string, after func(*Conn)) time.Duration {
	tb.Helper()
	one := make([]byte, 1)
	began := time.Now()
	c, err := d.DialContext(context.Background(), addr, "printer-7")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(one); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(c, one); err != nil {
		tb.Fatal(err)
	}
	took := time.Since(began)
	if after != nil {
		after(c.(*Conn))
	}
	return took
}
