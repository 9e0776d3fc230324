package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// startClusterDP runs a DP of a cluster that shares reg, advertising its
// loopback address, until the test ends.
func startClusterDP(t testing.TB, reg Registry) (string, *DiscoverPoint) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp := &DiscoverPoint{Registry: reg, Advertise: l.Addr().String(), Logger: testLogger()}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	t.Cleanup(func() {
		dp.Close()
		<-served
	})
	return l.Addr().String(), dp
}

// startCluster runs n DPs sharing one MemoryRegistry.
func startCluster(t testing.TB, n int) ([]string, []*DiscoverPoint, *MemoryRegistry) {
	reg := new(MemoryRegistry)
	addrs := make([]string, n)
	dps := make([]*DiscoverPoint, n)
	for i := range n {
		addrs[i], dps[i] = startClusterDP(t, reg)
	}
	return addrs, dps, reg
}

// roundTrip sends msg on c, half-closes, and checks the echo.
func roundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
	}
}

// A server on DP1, a client on DP3: DP3 carries the session to DP1, in
// every combination of transports and for a port-mode client.
func TestClusterForward(t *testing.T) {
	msg := bytes.Repeat([]byte("across the cluster "), 50000)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			addrs, _, _ := startCluster(t, 3)
			l := listen(t, &ListenConfig{Transport: m.server}, addrs[0], "printer-7")
			echo(t, l)
			d := Dialer{Transport: m.client, Name: "laptop"}
			c, err := d.DialContext(context.Background(), addrs[2], "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, want := c.RemoteAddr().String(), "printer-7@"+addrs[2]; got != want {
				t.Errorf("RemoteAddr = %q, want %q", got, want)
			}
			roundTrip(t, c, msg)
		})
	}
	t.Run("port", func(t *testing.T) {
		addrs, dps, _ := startCluster(t, 3)
		l := listen(t, &ListenConfig{Transport: TransportYamux}, addrs[0], "ssh")
		echo(t, l)
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go dps[2].ServePort(pl, "ssh")
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, msg)
	})
}

// The server sees the client's name through the hop.
func TestClusterClientName(t *testing.T) {
	addrs, _, _ := startCluster(t, 2)
	l := listen(t, nil, addrs[0], "svc")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	d := Dialer{Name: "laptop", Transport: TransportYamux}
	c, err := d.DialContext(context.Background(), addrs[1], "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	defer sc.Close()
	if got := sc.RemoteAddr().(*Addr).Name; got != "laptop" {
		t.Errorf("server sees client %q, want laptop", got)
	}
}

// A Listener with links on two DPs: DP1 dies; the session in flight on it
// ends with an error, and new sessions from DP3 go through DP2.
func TestClusterListenerSurvivesDP(t *testing.T) {
	addrs, dps, reg := startCluster(t, 3)
	l := listen(t, &ListenConfig{Transport: TransportYamux}, addrs[0]+","+addrs[1], "printer-7")
	echo(t, l)
	if got, want := l.Addr().String(), "printer-7@"+addrs[0]+","+addrs[1]; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
	holders, err := reg.Holders(context.Background(), "printer-7")
	if err != nil || len(holders) != 2 {
		t.Fatalf("Holders = %v, %v; want DP1 and DP2", holders, err)
	}

	d := Dialer{Transport: TransportYamux}
	inflight, err := d.DialContext(context.Background(), addrs[0], "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer inflight.Close()
	if _, err := inflight.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(inflight, buf); err != nil {
		t.Fatal(err)
	}

	dps[0].Close()
	inflight.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := inflight.Read(buf); err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session in flight on the dead DP: Read = %v, want an error that is not io.EOF", err)
	}

	for i := range 3 {
		c, err := d.DialContext(context.Background(), addrs[2], "printer-7")
		if err != nil {
			t.Fatalf("session %d through DP3 after DP1 died: %v", i, err)
		}
		roundTrip(t, c, []byte("still here"))
		c.Close()
	}
	// A client with the list of DPs skips the dead one.
	c, err := d.DialContext(context.Background(), addrs[0]+","+addrs[2], "printer-7")
	if err != nil {
		t.Fatalf("Dial with a list whose first DP is dead: %v", err)
	}
	roundTrip(t, c, []byte("failover"))
	c.Close()
}

// A name held on one DP cannot be taken through another by a different
// owner; the same owner adds links on any DP.
func TestClusterOwnership(t *testing.T) {
	addrs, _, _ := startCluster(t, 2)
	l := listen(t, &ListenConfig{Owner: "alice"}, addrs[0], "x")
	echo(t, l)
	_, err := (&ListenConfig{Owner: "mallory"}).Listen(context.Background(), addrs[1], "x")
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("Listen by another owner through DP2: %v, want ErrNameTaken", err)
	}
	_, err = (&ListenConfig{Owner: "mallory"}).Listen(context.Background(), addrs[1]+","+addrs[0], "x")
	if !errors.Is(err, ErrNameTaken) {
		t.Fatalf("Listen by another owner on both DPs: %v, want ErrNameTaken", err)
	}
	l2 := listen(t, &ListenConfig{Owner: "alice"}, addrs[1], "x")
	echo(t, l2)
	c, err := Dial(addrs[1], "x")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, []byte("mine"))
	c.Close()
}

// A registry entry of a DP that is gone costs one failed dial, not the
// session; with only such entries the client is told why.
func TestClusterStaleHolder(t *testing.T) {
	addrs, _, reg := startCluster(t, 2)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	ctx := context.Background()
	if err := reg.Register(ctx, Registration{Name: "x", Owner: "o", DP: deadAddr}); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(addrs[1], "x")
	if err == nil || !strings.Contains(err.Error(), "none took the session") {
		t.Fatalf("Dial with only a dead holder: %v, want a refusal that says no DP took it", err)
	}

	l := listen(t, &ListenConfig{Owner: "o"}, addrs[0], "x")
	echo(t, l)
	for i := range 4 { // the holders are tried in random order
		c, err := Dial(addrs[1], "x")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		roundTrip(t, c, []byte("skip the dead one"))
		c.Close()
	}
}

// Two DPs whose registry entries point at each other but hold no link do
// not pass a session back and forth: the second refuses it.
func TestClusterNoLoop(t *testing.T) {
	addrs, _, reg := startCluster(t, 2)
	ctx := context.Background()
	for _, a := range addrs {
		if err := reg.Register(ctx, Registration{Name: "ghost", Owner: "o", DP: a}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := DialContext(ctx, addrs[0], "ghost")
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Dial = %v, want a refusal", err)
	}
	if !strings.Contains(err.Error(), "no server named") {
		t.Errorf("refusal %q does not carry the second DP's answer", err)
	}
}

// A DP with no Advertise never forwards, even with a shared registry.
func TestClusterNoAdvertise(t *testing.T) {
	reg := new(MemoryRegistry)
	dp1, _ := startClusterDP(t, reg)
	dp2 := startDP(t, &DiscoverPoint{Registry: reg})
	l := listen(t, nil, dp1, "x")
	echo(t, l)
	if _, err := Dial(dp2, "x"); err == nil || !strings.Contains(err.Error(), "no server named") {
		t.Fatalf("Dial through a DP without Advertise: %v, want no server", err)
	}
}

// A holder that takes the connection but never answers (a DP whose host
// hangs) gets its share of the time, and the next holder the rest.
func TestClusterHolderHangs(t *testing.T) {
	reg := new(MemoryRegistry)
	dp1, _ := startClusterDP(t, reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp2 := &DiscoverPoint{Registry: reg, Advertise: ln.Addr().String(), HandshakeTimeout: time.Second}
	go dp2.Serve(ln)
	t.Cleanup(func() { dp2.Close() })

	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c // never read, never answered
		}
	}()
	t.Cleanup(func() {
		hang.Close()
		for c := range held {
			c.Close()
		}
	})
	l := listen(t, &ListenConfig{Owner: "o"}, dp1, "x")
	echo(t, l)
	if err := reg.Register(context.Background(), Registration{Name: "x", Owner: "o", DP: hang.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // the holders are tried in random order
		c, err := Dial(ln.Addr().String(), "x")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		roundTrip(t, c, []byte("past the hung DP"))
		c.Close()
	}
}
