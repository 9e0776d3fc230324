package etcdregistry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"rtcp"
	"rtcp/internal/etcdtest"
	"rtcp/internal/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTTL is the shortest lease etcd grants with its default settings.
const testTTL = 2 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("RTCP_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openRegistry opens a Registry on e, closed when the test ends.
func openRegistry(t testing.TB, e *etcdtest.Server, h *hooks) *Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, Config{Endpoints: []string{e.Endpoint}, TTL: testTTL, Logger: testLogger(), hooks: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// crash stops r as a DP that dies does: no more keepalives, no revoke;
// its keys stay until the lease expires.
func (r *Registry) crash() {
	r.closeMu.Do(func() {
		r.cancel()
		<-r.done
		if r.ownCli {
			r.cli.Close()
		}
	})
}

func TestRegistry(t *testing.T) {
	e := etcdtest.Start(t)
	r1, r2 := openRegistry(t, e, nil), openRegistry(t, e, nil)
	ctx := context.Background()
	name := "cccp:printer/7 ü" // a door's name; escaping keeps it one name
	a1 := rtcp.Registration{Name: name, Owner: "alice", DP: "127.0.0.1:9001"}
	a2 := rtcp.Registration{Name: name, Owner: "alice", DP: "127.0.0.1:9002"}
	m2 := rtcp.Registration{Name: name, Owner: "mallory", DP: "127.0.0.1:9002"}

	if _, err := r1.Lookup(ctx, name); !errors.Is(err, rtcp.ErrNoServer) {
		t.Fatalf("Lookup of a free name: %v, want ErrNoServer", err)
	}
	for _, bad := range []string{"", "printer/7", "Printer-7", "a@b", "x\ny", "cccp:"} {
		reg := rtcp.Registration{Name: bad, Owner: "alice", DP: "127.0.0.1:9001"}
		if err := r1.Register(ctx, reg); !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("Register(%q) = %v, want ErrBadName", bad, err)
		}
	}
	if err := r1.Register(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if err := r1.Register(ctx, a1); err != nil {
		t.Fatalf("registering again (a link coming back): %v", err)
	}
	if err := r2.Register(ctx, m2); !errors.Is(err, rtcp.ErrNameTaken) {
		t.Fatalf("another owner through another DP: %v, want ErrNameTaken", err)
	}
	if err := r2.Register(ctx, a2); err != nil {
		t.Fatalf("the same owner through another DP: %v", err)
	}
	hs, err := r1.Holders(ctx, name)
	if err != nil || len(hs) != 2 || hs[0] != a1 || hs[1] != a2 {
		t.Fatalf("Holders = %v, %v; want %v and %v", hs, err, a1, a2)
	}
	if _, err := r1.Holders(ctx, "cccp:printer"); !errors.Is(err, rtcp.ErrNoServer) {
		t.Fatalf("a name that is a prefix of another: %v, want ErrNoServer", err)
	}
	if err := r2.Unregister(ctx, m2); err != nil {
		t.Fatal(err)
	}
	if hs, _ := r1.Holders(ctx, name); len(hs) != 2 {
		t.Fatalf("Unregister by a non-owner removed an entry: %v", hs)
	}
	if err := r1.Unregister(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if got, err := r1.Lookup(ctx, name); err != nil || got != a2 {
		t.Fatalf("after DP1 gave the name up: Lookup = %v, %v; want %v", got, err, a2)
	}
	if err := r2.Register(ctx, m2); !errors.Is(err, rtcp.ErrNameTaken) {
		t.Fatalf("a name still held at one DP: %v, want ErrNameTaken", err)
	}
	if err := r2.Unregister(ctx, a2); err != nil {
		t.Fatal(err)
	}
	if err := r2.Register(ctx, m2); err != nil {
		t.Fatalf("a freed name: %v", err)
	}
	// Close revokes the lease: the name is free at once.
	r2.Close()
	if _, err := r1.Lookup(ctx, name); !errors.Is(err, rtcp.ErrNoServer) {
		t.Fatalf("Lookup after the holder's Close: %v, want ErrNoServer", err)
	}
}

// Concurrent registrations of one free name by different owners: exactly
// one wins.
func TestRegisterRace(t *testing.T) {
	e := etcdtest.Start(t)
	const n = 8
	regs := make([]*Registry, n)
	for i := range regs {
		regs[i] = openRegistry(t, e, nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, r := range regs {
		wg.Go(func() {
			errs[i] = r.Register(context.Background(), rtcp.Registration{Name: "x", Owner: string(rune('a' + i)), DP: string(rune('A' + i))})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, rtcp.ErrNameTaken):
			t.Errorf("Register: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d owners registered the name, want 1", won)
	}
}

// A DP that dies loses its names when its lease expires.
func TestStaleNameExpires(t *testing.T) {
	e := etcdtest.Start(t)
	dead, live := openRegistry(t, e, nil), openRegistry(t, e, nil)
	ctx := context.Background()
	if err := dead.Register(ctx, rtcp.Registration{Name: "x", Owner: "alice", DP: "dp1"}); err != nil {
		t.Fatal(err)
	}
	w := watchDeletes(t, e, dead.namePrefix("x"))
	dead.crash()
	taken := rtcp.Registration{Name: "x", Owner: "bob", DP: "dp2"}
	if err := live.Register(ctx, taken); !errors.Is(err, rtcp.ErrNameTaken) {
		t.Fatalf("right after the crash: %v, want ErrNameTaken (the lease has not expired)", err)
	}
	start := time.Now()
	select {
	case <-w:
	case <-time.After(30 * time.Second):
		t.Fatal("the dead DP's name did not expire within 30 s")
	}
	t.Logf("the name expired %v after the crash (TTL %v)", time.Since(start).Round(100*time.Millisecond), testTTL)
	if err := live.Register(ctx, taken); err != nil {
		t.Fatalf("after the lease expired: %v", err)
	}
}

// watchDeletes returns a channel closed when a key under prefix is deleted.
func watchDeletes(t testing.TB, e *etcdtest.Server, prefix string) <-chan struct{} {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithFilterPut())
	deleted := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for resp := range wch {
			if len(resp.Events) > 0 {
				close(deleted)
				break
			}
		}
		for range wch {
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cli.Close()
	})
	return deleted
}

// cluster is three DPs, each with its own Registry on one etcd.
type cluster struct {
	addrs []string
	dps   []*rtcp.DiscoverPoint
	regs  []*Registry
	lost  []chan struct{} // a value each time DP i's lease is lost
	back  []chan struct{} // a value each time DP i's lease is regained
}

func startCluster(t testing.TB, e *etcdtest.Server, n int) *cluster {
	c := &cluster{}
	for range n {
		lost, back := make(chan struct{}, 8), make(chan struct{}, 8)
		reg := openRegistry(t, e, &hooks{
			leaseLost: func() { lost <- struct{}{} },
			recovered: func() { back <- struct{}{} },
		})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dp := &rtcp.DiscoverPoint{Registry: reg, Advertise: l.Addr().String(), Logger: testLogger()}
		served := make(chan error, 1)
		go func() { served <- dp.Serve(l) }()
		t.Cleanup(func() { dp.Close(); <-served })
		c.addrs = append(c.addrs, l.Addr().String())
		c.dps = append(c.dps, dp)
		c.regs = append(c.regs, reg)
		c.lost = append(c.lost, lost)
		c.back = append(c.back, back)
	}
	return c
}

// echoServer serves l, echoing each session, until the test ends.
func echoServer(t testing.TB, l net.Listener) {
	flowtest.Echo(t, l)
}

func listen(t testing.TB, lc *rtcp.ListenConfig, addr, name string) net.Listener {
	t.Helper()
	l, err := lc.Listen(context.Background(), addr, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// check dials name through addr and checks an echo.
func check(t testing.TB, addr, name string, d *rtcp.Dialer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, addr, name)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("cluster "), 10000)
	go func() {
		c.Write(msg)
		c.(*rtcp.Conn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	return nil
}

// The scenario: a server on DP1 (and DP2), a client on DP3; DP1
// dies; the server's links on DP2 keep the name reachable.
func TestClusterDPDies(t *testing.T) {
	e := etcdtest.Start(t)
	c := startCluster(t, e, 3)
	l := listen(t, &rtcp.ListenConfig{Transport: rtcp.TransportYamux}, c.addrs[0]+","+c.addrs[1], "printer-7")
	echoServer(t, l)
	for _, d := range []*rtcp.Dialer{{}, {Transport: rtcp.TransportYamux}} {
		if err := check(t, c.addrs[2], "printer-7", d); err != nil {
			t.Fatalf("client on DP3 (%v): %v", d.Transport, err)
		}
	}

	// Another owner cannot take the name through DP3.
	_, err := (&rtcp.ListenConfig{}).Listen(context.Background(), c.addrs[2], "printer-7")
	if !errors.Is(err, rtcp.ErrNameTaken) {
		t.Fatalf("another server through DP3: %v, want ErrNameTaken", err)
	}

	// A session in flight on DP1 ends with an error when DP1 dies.
	inflight, err := rtcp.Dial(c.addrs[0], "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer inflight.Close()
	c.regs[0].crash() // DP1 dies: its entries stay until its lease expires
	c.dps[0].Close()
	inflight.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := inflight.Read(make([]byte, 1)); err == nil || err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session in flight on the dead DP: %v, want an error", err)
	}
	hs, err := c.regs[2].Holders(context.Background(), "printer-7")
	if err != nil || len(hs) != 2 {
		t.Fatalf("holders right after DP1 died: %v, %v; want DP1's stale entry and DP2's", hs, err)
	}
	for i := range 4 {
		if err := check(t, c.addrs[2], "printer-7", &rtcp.Dialer{Transport: rtcp.TransportYamux}); err != nil {
			t.Fatalf("session %d through DP3 after DP1 died: %v", i, err)
		}
	}
}

// etcd restarts (and stays away longer than the lease): the DPs take new
// leases and register their names again; no name is lost.
func TestEtcdRestart(t *testing.T) {
	e := etcdtest.Start(t)
	c := startCluster(t, e, 2)
	l := listen(t, &rtcp.ListenConfig{Transport: rtcp.TransportYamux}, c.addrs[0], "printer-7")
	echoServer(t, l)
	if err := check(t, c.addrs[1], "printer-7", &rtcp.Dialer{}); err != nil {
		t.Fatal(err)
	}

	e.Stop()
	waitFor(t, c.lost[0], "DP1 to notice its lease is lost")
	// Sessions on DP1's own links need no etcd.
	if err := check(t, c.addrs[0], "printer-7", &rtcp.Dialer{}); err != nil {
		t.Fatalf("session on DP1 while etcd is down: %v", err)
	}
	e.Start()
	waitFor(t, c.back[0], "DP1 to regain a lease")
	if err := check(t, c.addrs[1], "printer-7", &rtcp.Dialer{}); err != nil {
		t.Fatalf("client on DP2 after etcd came back: %v", err)
	}
	// The name is still owned: another server cannot take it.
	_, err := (&rtcp.ListenConfig{}).Listen(context.Background(), c.addrs[1], "printer-7")
	if !errors.Is(err, rtcp.ErrNameTaken) {
		t.Fatalf("another server after the restart: %v, want ErrNameTaken", err)
	}
	// DP1's old lease was revoked: once DP1 lets the name go, it is free.
	w := watchDeletes(t, e, c.regs[0].namePrefix("printer-7"))
	l.Close()
	waitFor(t, w, "the name to be unregistered")
	if _, err := c.regs[1].Lookup(context.Background(), "printer-7"); !errors.Is(err, rtcp.ErrNoServer) {
		t.Fatalf("Lookup after the server left: %v, want ErrNoServer", err)
	}
}

func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A server on DP1 and a client on DP3, both asking for a direct path, in a
// cluster on etcd whose DPs prove a key of their own on the hop: DP1
// brokers the session, to the client's address as DP3 saw it, and the
// session moves; DP3 counts nothing direct.
func TestClusterDirect(t *testing.T) {
	e := etcdtest.Start(t)
	cluster := &rtcp.Credential{Key: "cluster", Secret: []byte("cluster-0123456789abcdef01234567")}
	var addrs []string
	var dps []*rtcp.DiscoverPoint
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dp := &rtcp.DiscoverPoint{
			Registry: openRegistry(t, e, nil), Advertise: l.Addr().String(), Logger: testLogger(),
			Policy: &rtcp.Policy{Keys: map[string][]byte{cluster.Key: cluster.Secret}, DPs: []string{cluster.Key},
				AnonymousClients: true, AnonymousServers: true},
			Peer: &rtcp.Dialer{Credential: cluster},
		}
		served := make(chan error, 1)
		go func() { served <- dp.Serve(l) }()
		t.Cleanup(func() { dp.Close(); <-served })
		addrs, dps = append(addrs, l.Addr().String()), append(dps, dp)
	}
	echoServer(t, listen(t, &rtcp.ListenConfig{Transport: rtcp.TransportYamux, Direct: true}, addrs[0], "printer-7"))
	c, err := (&rtcp.Dialer{Direct: true}).DialContext(context.Background(), addrs[1], "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := c.(*rtcp.Conn)
	// Each direction moves at its first Write after its punch ended (a
	// few milliseconds on loopback): echo until both have.
	buf := make([]byte, 5)
	for deadline := time.Now().Add(10 * time.Second); !rc.Direct(); {
		if time.Now().After(deadline) {
			t.Fatalf("the session stays on the relay: %v", rc.DirectError())
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
	}
	if st := dps[0].Stats(); st.DirectBrokered != 1 || st.DirectMoved != 1 {
		t.Errorf("DP1's Stats: %d brokered, %d moved; want 1, 1", st.DirectBrokered, st.DirectMoved)
	}
	if st := dps[1].Stats(); st.DirectBrokered != 0 || st.DirectMoved != 0 {
		t.Errorf("DP3's Stats: %d brokered, %d moved; want 0, 0", st.DirectBrokered, st.DirectMoved)
	}
}
