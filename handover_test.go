package rtcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/protocol/plan5"
)

// serveTagged serves l until it closes: each session gets tag, then an
// echo of what it sends.
func serveTagged(t *testing.T, l net.Listener, tag string) {
	flowtest.ServeEach(t, l, func(c net.Conn) {
		if _, err := io.WriteString(c, tag); err == nil {
			io.Copy(c, c)
		}
	})
}

// dialTag dials the name and returns the tag its server sent.
func dialTag(t *testing.T, d *Dialer, dp, name string) (net.Conn, string) {
	t.Helper()
	c, err := d.DialContext(context.Background(), dp, name)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	tag := make([]byte, 4)
	if _, err := io.ReadFull(c, tag); err != nil {
		c.Close()
		t.Fatalf("reading the server's tag: %v", err)
	}
	return c, string(tag)
}

// TestBlueGreenHandover: a new server process (green) registers the name
// under the same key while the old one (blue) still carries a session,
// then blue closes. Blue's link with that session drains: it refuses new
// sessions, and the DP must take it out of the rotation and carry every
// later client to green, refusing nobody.
func TestBlueGreenHandover(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			dp := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}, Logger: testLogger()})
			d := &Dialer{Credential: alice}
			lc := &ListenConfig{Credential: alice, Transport: tr}
			blue := listen(t, lc, dp, "svc")
			serveTagged(t, blue, "blue")
			held, tag := dialTag(t, d, dp, "svc")
			defer held.Close()
			if tag != "blue" {
				t.Fatalf("first session reached %q, want blue", tag)
			}

			green := listen(t, lc, dp, "svc")
			serveTagged(t, green, "gren")
			blue.Close() // its link that carries held drains

			for i := range 20 {
				c, tag := dialTag(t, d, dp, "svc")
				c.Close()
				if tag != "gren" {
					t.Fatalf("dial %d after blue closed reached %q, want green", i, tag)
				}
			}
			ping(t, held, "blue's session goes on")
		})
	}
}

// refusingLink is a Link written outside the package: it refuses every
// open with err.
type refusingLink struct {
	err  error
	done chan struct{}
}

func (l *refusingLink) Open(context.Context, string, string) (net.Conn, error) { return nil, l.err }
func (l *refusingLink) Done() <-chan struct{}                                  { return l.done }

// TestForeignLinkRefuses: a Link of the program's own that refuses an
// open with an error matching ErrRefused has its reason given to the
// client, which sees a refusal, not a failed link.
func TestForeignLinkRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"RefusedError", &RefusedError{Reason: "device busy: try at 5 pm"}, "device busy: try at 5 pm"},
		{"wrapped", fmt.Errorf("plc offline: %w", ErrRefused), "plc offline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := &DiscoverPoint{Logger: testLogger()}
			addr := startDP(t, dp)
			remove, err := dp.AddLink("plc", "owner", &refusingLink{err: tc.err, done: make(chan struct{})})
			if err != nil {
				t.Fatal(err)
			}
			defer remove()
			for _, tr := range []Transport{TransportJSON, TransportYamux} {
				_, err = (&Dialer{Transport: tr}).DialContext(context.Background(), addr, "plc")
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v client: dial gave %v; want a refusal (ErrRefused) that says %q", tr, err, tc.want)
				}
			}
		})
	}
}

// TestSlowDataLinkDial: on the tcp transport each session dials a data
// link of its own; a dial that hangs must hold up only its own session,
// not the sessions opened after it on the same control link.
func TestSlowDataLinkDial(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Logger: testLogger()})
	var (
		mu      sync.Mutex
		dials   int
		started = make(chan struct{})
		release = make(chan struct{})
	)
	var nd net.Dialer
	lc := &ListenConfig{Transport: TransportTCP, Spares: -1, PoolSize: 1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			n := dials
			mu.Unlock()
			if n == 2 { // the first data link
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return nd.DialContext(ctx, network, addr)
		}}
	serveTagged(t, listen(t, lc, dp, "svc"), "tagd")

	first := make(chan error, 1)
	go func() {
		c, err := Dial(dp, "svc")
		if err == nil {
			c.Close()
		}
		first <- err
	}()
	<-started
	c, tag := dialTag(t, &Dialer{}, dp, "svc")
	c.Close()
	if tag != "tagd" {
		t.Fatalf("second session got %q", tag)
	}
	select {
	case err := <-first:
		t.Fatalf("the first session ended (%v) before its data link was dialled", err)
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first session, once its data link was dialled: %v", err)
	}
}

// TestDataLinkDialFails: a server that cannot dial a session's data link
// tells the DP why, and the client gets that reason at once, not a
// timeout.
func TestDataLinkDialFails(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Logger: testLogger()})
	var (
		mu    sync.Mutex
		dials int
	)
	var nd net.Dialer
	lc := &ListenConfig{Transport: TransportTCP, Spares: -1, PoolSize: 1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			n := dials
			mu.Unlock()
			if n > 1 {
				return nil, errors.New("no route to the DP today")
			}
			return nd.DialContext(ctx, network, addr)
		}}
	serveTagged(t, listen(t, lc, dp, "svc"), "tagd")
	_, err := Dial(dp, "svc")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no route to the DP today") {
		t.Fatalf("dial gave %v; want a refusal that says why the data link failed", err)
	}
}

// pipeLink is a Link of the program's own whose sessions are echoed.
type pipeLink struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func newPipeLink(t *testing.T) *pipeLink {
	l := &pipeLink{done: make(chan struct{})}
	t.Cleanup(func() { close(l.done); l.wg.Wait() })
	return l
}

func (l *pipeLink) Open(context.Context, string, string) (net.Conn, error) {
	a, b := net.Pipe()
	l.wg.Go(func() { defer b.Close(); io.Copy(b, b) })
	return a, nil
}
func (l *pipeLink) Done() <-chan struct{} { return l.done }

// TestAddLinkAs: a door's link registers as a key, and the Policy's
// owner rules apply to its name as to a server that dials in: another
// key, or an anonymous server, is refused; the key's own new link takes
// the name; a link the policy stops allowing is withdrawn.
func TestAddLinkAs(t *testing.T) {
	pol := &Policy{Keys: testKeys(), AnonymousClients: true,
		Names: []NameRule{{Name: "plc", Owners: []string{"alice"}}}}
	dp := &DiscoverPoint{Policy: pol, Logger: testLogger()}
	addr := startDP(t, dp)

	for _, key := range []string{"bob", ""} {
		if _, err := dp.AddLinkAs(key, "plc", "x", newPipeLink(t)); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("AddLinkAs(%q, plc) = %v, want ErrUnauthorized", key, err)
		}
	}
	remove, err := dp.AddLinkAs("alice", "plc", "device-1", newPipeLink(t))
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	remove2, err := dp.AddLinkAs("alice", "plc", "device-1-again", newPipeLink(t))
	if err != nil {
		t.Fatalf("the key's second link: %v", err)
	}
	defer remove2()
	if _, err := dp.AddLink("plc", "someone", newPipeLink(t)); !errors.Is(err, ErrNameTaken) {
		t.Errorf("AddLink of another owner = %v, want ErrNameTaken", err)
	}
	c, err := Dial(addr, "plc")
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c, "through a door's link")
	c.Close()

	// alice loses the name: her links are withdrawn at the next session.
	dp.SetPolicy(&Policy{Keys: testKeys(), AnonymousClients: true,
		Names: []NameRule{{Name: "plc", Owners: []string{"bob"}}}})
	if _, err := Dial(addr, "plc"); err == nil || !strings.Contains(err.Error(), "plc") {
		t.Fatalf("dial after the policy took the name away: %v, want a refusal", err)
	}
}

// TestDataLinkRequestCarriesNoBytes: a tcp-transport server that answers
// a data-link request (a Connect with a Token) with Ack and then sends
// bytes on it breaks the protocol: that open fails as a link failure,
// and the DP, and the other sessions through it, go on.
func TestDataLinkRequestCarriesNoBytes(t *testing.T) {
	addr := runDP(t, &DiscoverPoint{Logger: testLogger()})
	h := newHealthy(t, addr)
	srv, dialed := rawTCPServer(t, addr, "bad")
	if _, ok := srv.read().(*plan5.Connect); !ok {
		t.Fatal("want the DP's Connect")
	}
	srv.sendMsg(&plan5.Ack{X: 101})
	srv.sendMsg(&plan5.Data{X: 101, C: []byte("A")})
	if err := <-dialed; err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("dial gave %v; want the open to fail as its link did", err)
	}
	h.check(t)
}

// TestHandoverDuringDataDial: on the tcp transport, a server that closes
// while it dials a session's data link hands that session to the name's
// other link (its successor under the same key), not a refusal.
func TestHandoverDuringDataDial(t *testing.T) {
	dp := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}, Logger: testLogger()})
	var (
		mu      sync.Mutex
		dials   int
		started = make(chan struct{})
	)
	var nd net.Dialer
	blueLC := &ListenConfig{Credential: alice, Transport: TransportTCP, Spares: -1, PoolSize: 1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			n := dials
			mu.Unlock()
			if n == 2 { // the session's data link: held until blue closes
				close(started)
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nd.DialContext(ctx, network, addr)
		}}
	blue := listen(t, blueLC, dp, "svc")
	serveTagged(t, blue, "blue")
	d := &Dialer{Credential: alice}
	got := make(chan string, 1)
	go func() {
		c, err := d.DialContext(context.Background(), dp, "svc")
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		tag := make([]byte, 4)
		io.ReadFull(c, tag)
		got <- string(tag)
	}()
	<-started
	green := listen(t, &ListenConfig{Credential: alice, Transport: TransportTCP}, dp, "svc")
	serveTagged(t, green, "gren")
	blue.Close()
	if tag := <-got; tag != "gren" {
		t.Fatalf("the session whose data link blue was dialling got %q, want green's", tag)
	}
}

// TestLinkTableGuards: a Link already in the table cannot serve a second
// name (the table is keyed by Link), a Link that cannot be a map key is
// refused, a door's links are not held to MaxLinksPerOwner, and a
// door's key takes back a name the Policy now gives it from a squatter.
func TestLinkTableGuards(t *testing.T) {
	dp := &DiscoverPoint{MaxLinksPerOwner: 2, Policy: &Policy{Keys: testKeys(), AnonymousServers: true, AnonymousClients: true}, Logger: testLogger()}
	startDP(t, dp)
	l := newPipeLink(t)
	remove, err := dp.AddLink("a", "o", l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.AddLink("b", "o", l); err == nil {
		t.Error("the same Link under a second name was accepted")
	}
	remove()
	if _, err := dp.AddLink("b", "other", newPipeLink(t)); err != nil {
		t.Errorf("after its only link left, name b: %v", err)
	}
	if _, err := dp.AddLink("c", "o", uncomparableLink{}); err == nil || !strings.Contains(err.Error(), "comparable") {
		t.Errorf("an uncomparable Link: %v, want a refusal that says why", err)
	}
	for i := range 5 { // more than MaxLinksPerOwner, one key
		if _, err := dp.AddLinkAs("alice", fmt.Sprintf("dev-%d", i), "door", newPipeLink(t)); err != nil {
			t.Fatalf("door link %d: %v", i, err)
		}
	}
	if _, err := dp.AddLinkAs("", "plc", "squatter", newPipeLink(t)); err != nil {
		t.Fatal(err)
	}
	dp.SetPolicy(&Policy{Keys: testKeys(), AnonymousServers: true, AnonymousClients: true,
		Names: []NameRule{{Name: "plc", Owners: []string{"alice"}}}})
	if _, err := dp.AddLinkAs("alice", "plc", "owner", newPipeLink(t)); err != nil {
		t.Errorf("the owner taking its name back from a squatter: %v", err)
	}
}

type uncomparableLink struct{ _ []int }

func (uncomparableLink) Open(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no")
}
func (uncomparableLink) Done() <-chan struct{} { return nil }

// TestDPTransportsListed: every transport the DP lists, it builds.
func TestDPTransportsListed(t *testing.T) {
	for _, tr := range dpTransports() {
		if dpTransport(tr) == nil {
			t.Errorf("transport %q is listed but not built", tr)
		}
	}
	if dpTransport("carrier-pigeon") != nil {
		t.Error("an unknown transport is built")
	}
}

// TestDataLinkFailsItsHandshake: a tcp-transport server whose data link
// for a session sends before the DP's Aloha breaks the protocol; the
// open fails at once (the DP tries the name's other links, here none),
// rather than waiting out the DP's HandshakeTimeout for a data link that
// came.
func TestDataLinkFailsItsHandshake(t *testing.T) {
	addr := runDP(t, &DiscoverPoint{Logger: testLogger(), HandshakeTimeout: time.Hour})
	srv, dialed := rawTCPServer(t, addr, "bad")
	cm, ok := srv.read().(*plan5.Connect)
	if !ok || cm.Token == "" {
		t.Fatalf("want the DP's Connect for a data link, got %+v", cm)
	}
	srv.sendMsg(&plan5.Ack{X: 101})
	data, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	// The Aloha and, at once, a byte that must wait for the DP's Aloha.
	b := plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "bad", Transport: wireData, Token: cm.Token})
	data.Write(append(b, 'x'))
	select {
	case err := <-dialed:
		if err == nil {
			t.Fatal("the dial succeeded over a data link that broke the protocol")
		}
	case <-time.After(time.Minute): // a hang fails, not blocks
		t.Fatal("the open waited for the DP's HandshakeTimeout")
	}
}

// rawTCPServer registers name at the DP addr as a hand-written server of
// the tcp transport, without spares, and dials name: the DP's Connect for
// that session is the server's next message, and dialed reports how the
// dial ended.
func rawTCPServer(t *testing.T, addr, name string) (srv *rawPeer, dialed <-chan error) {
	t.Helper()
	srv = dialRaw(t, addr)
	srv.sendMsg(&plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: name, Transport: wireTCP})
	if a, ok := srv.read().(*plan5.Aloha); !ok || a.Error != "" {
		t.Fatalf("DP answered %+v", a)
	}
	ch := make(chan error, 1)
	go func() {
		c, err := Dial(addr, name)
		if err == nil {
			c.Close()
		}
		ch <- err
	}()
	return srv, ch
}
