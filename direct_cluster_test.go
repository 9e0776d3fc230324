package rtcp

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"golang.org/x/net/nettest"

	"rtcp/protocol/plan5"
)

// directCluster is two DPs of a cluster on loopback: DP1 holds the
// server's link, DP3 is the DP the client reaches, and carries the session
// to DP1 (the hop).
type directCluster struct {
	dp1, dp3     *DiscoverPoint
	addr1, addr3 string
	ended        chan bool // DP1's brokered sessions, as they end: moved or not (up to 64 unread)
}

// startDirectCluster starts DP1 and DP3 sharing a registry. Both take
// anonymous peers, and DP1 lists clusterCred's key among its DPs'; the
// caller may set NoDirect on either, and dp3's Peer, which defaults to a
// Dialer that proves clusterCred.
func startDirectCluster(t *testing.T, dp1, dp3 *DiscoverPoint) *directCluster {
	t.Helper()
	reg := new(MemoryRegistry)
	pol := func() *Policy {
		return &Policy{Keys: clusterKeys(), DPs: []string{clusterCred.Key}, AnonymousClients: true, AnonymousServers: true}
	}
	dc := &directCluster{ended: make(chan bool, 64)}
	dp1.Registry, dp1.Policy = reg, pol()
	dc.dp1 = dp1
	dc.dp1.brokeredEnded = func(moved bool) { dc.ended <- moved }
	dc.addr1 = startDPAt(t, dc.dp1, true)
	dp3.Registry, dp3.Policy = reg, pol()
	if dp3.Peer == nil {
		dp3.Peer = &Dialer{Credential: clusterCred}
	}
	dc.dp3 = dp3
	dc.addr3 = startDPAt(t, dp3, true)
	return dc
}

// serveDirect listens on DP1 as "printer-7", over yamux, asking for a
// direct path, and returns the sessions it accepts.
func (dc *directCluster) serveDirect(t *testing.T) <-chan net.Conn {
	t.Helper()
	accepted := make(chan net.Conn, 4)
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, dc.addr1, "printer-7")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return accepted
}

// dialHop dials printer-7 on DP1 over yamux with cred, as a DP's hop
// would, its Aloha changed by hop, and returns the client's session, the
// server's (from serveDirect's accepted), and the DP's broker answer;
// both sessions are closed when the test ends.
func (dc *directCluster) dialHop(t *testing.T, accepted <-chan net.Conn, cred *Credential, hop func(*plan5.Aloha)) (c, sc net.Conn, b *hopBroker) {
	t.Helper()
	d := Dialer{Credential: cred, Transport: TransportYamux}
	b = new(hopBroker)
	c, err := d.dial(context.Background(), dc.addr1, "printer-7", dialAs{transport: TransportYamux, hop: hop, broker: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc = <-accepted
	t.Cleanup(func() { sc.Close() })
	return c, sc, b
}

// A client on DP3 and a server on DP1, both asking for a direct path: DP1,
// which holds the server's link, brokers the session through the hop, to
// the client's address as DP3 saw it. The session starts on the relay
// through both DPs, moves, and carries every byte both ways; DP1 counts it
// brokered and moved, with the bytes both sides wrote directly, and DP3
// counts nothing direct.
func TestDirectClusterHop(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			dc := startDirectCluster(t, new(DiscoverPoint), new(DiscoverPoint))
			events := make(chan Event, 16)
			l := listen(t, &ListenConfig{Transport: tr, Direct: true, OnEvent: func(e Event) {
				if e.Kind == EventDirect {
					events <- e
				}
			}}, dc.addr1, "printer-7")
			echo(t, l)
			d := Dialer{Direct: true}
			c, err := d.DialContext(context.Background(), dc.addr3, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rc := c.(*Conn)
			if _, ok := rc.s.(*moveConn); !ok {
				t.Fatal("the client's session was not brokered through the hop")
			}
			// Before the punch has ended: these bytes cross both DPs in
			// records, or move; either way they come back.
			ping(t, c, "before the move")
			punched(rc)
			echoCheck(t, c, 1<<20) // moves the session
			if !rc.Direct() {
				t.Fatalf("the session stays on the relay: %v", rc.DirectError())
			}
			if e := <-events; e.Err != nil {
				t.Errorf("the server's EventDirect: %v, want nil (moved)", e.Err)
			}
			c.Close()
			if moved := <-dc.ended; !moved {
				t.Error("DP1 saw the session end without moving")
			}
			// Each side wrote its 1 MiB directly, and the ping's bytes too
			// if that side's punch had ended before it echoed them (the
			// server's starts first).
			const before = uint64(len("before the move"))
			if st := dc.dp1.Stats(); st.DirectBrokered != 1 || st.DirectMoved != 1 || st.DirectBytes < 2<<20 || st.DirectBytes > 2<<20+2*before {
				t.Errorf("DP1's Stats: %d brokered, %d moved, %d direct bytes; want 1, 1, %d to %d", st.DirectBrokered, st.DirectMoved, st.DirectBytes, 2<<20, 2<<20+2*before)
			}
			if st := dc.dp3.Stats(); st.DirectBrokered != 0 || st.DirectMoved != 0 || st.DirectBytes != 0 || st.SessionsTotal != 1 {
				t.Errorf("DP3's Stats: %d brokered, %d moved, %d direct bytes, %d sessions; want 0, 0, 0, 1", st.DirectBrokered, st.DirectMoved, st.DirectBytes, st.SessionsTotal)
			}
		})
	}
}

// A session carried by a DP that does not broker, or over a hop that does
// not prove a key the holder lists among its DPs', stays on the relay,
// with no error: the holder has no address of the client that it can
// trust.
func TestDirectClusterNotBrokered(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dp1, dp3 *DiscoverPoint
	}{
		{"DP3 with NoDirect", new(DiscoverPoint), &DiscoverPoint{NoDirect: true}},
		{"DP1 with NoDirect", &DiscoverPoint{NoDirect: true}, new(DiscoverPoint)},
		{"a hop without a key", new(DiscoverPoint), &DiscoverPoint{Peer: new(Dialer)}},
		{"a hop with a key that is not a DP's", new(DiscoverPoint), &DiscoverPoint{Peer: &Dialer{Credential: alice}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := startDirectCluster(t, tc.dp1, tc.dp3)
			echo(t, listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, dc.addr1, "printer-7"))
			d := Dialer{Direct: true}
			c, err := d.DialContext(context.Background(), dc.addr3, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if rc := c.(*Conn); rc.Direct() || rc.DirectError() != nil {
				t.Fatalf("Direct %v, DirectError %v; want a relayed session and no error", rc.Direct(), rc.DirectError())
			}
			if _, ok := c.(*Conn).s.(*moveConn); ok {
				t.Fatal("the session was brokered")
			}
			echoCheck(t, c, 64<<10)
			for _, dp := range []*DiscoverPoint{dc.dp1, dc.dp3} {
				if st := dp.Stats(); st.DirectBrokered != 0 {
					t.Errorf("Stats: %d sessions brokered, want 0", st.DirectBrokered)
				}
			}
		})
	}
}

// A peer that is no DP of the cluster cannot have a direct path brokered
// to an address of its choosing: a ClientAddr in its Aloha, with or
// without Via, is not the address the DP brokers to or tells the server.
func TestDirectClaimedClientAddr(t *testing.T) {
	dc := startDirectCluster(t, new(DiscoverPoint), new(DiscoverPoint))
	accepted := dc.serveDirect(t)
	const claimed = "127.0.0.9:4242"
	for _, tc := range []struct {
		name string
		cred *Credential
		via  bool
	}{
		{"anonymous, with Via", nil, true},
		{"a key that is not a DP's, with Via", alice, true},
		{"anonymous, without Via", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sc, b := dc.dialHop(t, accepted, tc.cred, func(a *plan5.Aloha) {
				if tc.via {
					a.Via, a.To = dc.addr3, dc.addr1
				}
				a.ClientAddr = claimed
			})
			if host := sc.RemoteAddr().(*Addr).Addr; host == claimed {
				t.Errorf("the server is told the client is at %s, the address it claimed", host)
			}
			if tc.via {
				if b.brokered() {
					t.Errorf("DP1 brokered a session over a hop of no DP's key (Peer %q)", b.peer)
				}
				return
			}
			// Without Via the DP brokers the client at the address of
			// its connection, never the claimed one.
			if !b.brokered() {
				t.Fatal("DP1 did not broker a client that reached it")
			}
			c.Close()
			sc.Close()
			<-dc.ended
		})
	}
	if st := dc.dp1.Stats(); st.DirectBrokered != 1 {
		t.Errorf("DP1's Stats: %d brokered, want 1 (the client without Via)", st.DirectBrokered)
	}
}

// nettest.TestConn on sessions brokered across the hop: the client on
// DP3, the server on DP1, each session moving mid-test while DP3 relays
// its records as bytes. The server's Conn is c1, which nettest drives
// hardest.
func TestDirectClusterConn(t *testing.T) {
	dc := startDirectCluster(t, new(DiscoverPoint), new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, dc.addr1, "printer-7")
	d := Dialer{Direct: true}
	var moved atomic.Int32 // sessions that ended direct
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		client, server, err := dialAccepted(&d, l, dc.addr3, "printer-7")
		if err != nil {
			return nil, nil, nil, err
		}
		if _, ok := client.(*Conn).s.(*moveConn); !ok {
			t.Error("the session was not brokered through the hop")
		}
		return server, client, func() {
			if client.(*Conn).Direct() {
				moved.Add(1)
			}
			client.Close()
			server.Close()
		}, nil
	})
	if moved.Load() == 0 {
		t.Error("no session moved to the direct path")
	}
}

// A session brokered across the hop whose client's records break the
// rules: DP1, the broker, cuts it, and DP3 passes the cut on to its
// client as an error, never as a clean end, as one DP would.
func TestDirectClusterCut(t *testing.T) {
	dc := startDirectCluster(t, new(DiscoverPoint), new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, dc.addr1, "printer-7")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	// A client of DP3 that asks for a direct path and then writes a
	// record of no known type: the DP reads its records, not it.
	b := new(hopBroker)
	d := Dialer{Transport: TransportYamux}
	c, err := d.dial(context.Background(), dc.addr3, "printer-7", dialAs{transport: TransportYamux, broker: b})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !b.brokered() {
		t.Fatal("DP3 passed on no broker's answer")
	}
	sc := <-accepted
	defer sc.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c); err == nil {
		t.Error("the client's Read ended cleanly; want the cut DP1 made, as an error")
	}
	if _, err := io.ReadAll(sc); err == nil {
		t.Error("the server's Read ended cleanly; want the cut")
	}
	if moved := <-dc.ended; moved {
		t.Error("DP1 counts the cut session moved")
	}
}

// A hop of a DP's key whose ClientAddr is no IP address and port (none at
// all, or a name) names no address to broker to: the session stays on
// the relay, never brokered to the hop's own address.
func TestDirectClusterHopAddrNotIP(t *testing.T) {
	dc := startDirectCluster(t, new(DiscoverPoint), new(DiscoverPoint))
	accepted := dc.serveDirect(t)
	for _, addr := range []string{"", "client.example:4242"} {
		t.Run(addr, func(t *testing.T) {
			c, sc, b := dc.dialHop(t, accepted, clusterCred, func(a *plan5.Aloha) {
				a.Via, a.To, a.ClientAddr = dc.addr3, dc.addr1, addr
			})
			if b.brokered() {
				t.Errorf("DP1 brokered a hop with ClientAddr %q (Peer %q)", addr, b.peer)
			}
			// Plain bytes, not records: the server was not brokered either.
			if _, err := c.Write([]byte("relayed")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len("relayed"))
			if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "relayed" {
				t.Fatalf("the server read %q, %v; want %q", buf, err, "relayed")
			}
		})
	}
	if st := dc.dp1.Stats(); st.DirectBrokered != 0 {
		t.Errorf("DP1's Stats: %d brokered, want 0", st.DirectBrokered)
	}
}
