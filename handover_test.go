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
)

// serveTagged serves l until it closes: each session gets tag, then an
// echo of what it sends.
func serveTagged(t *testing.T, l net.Listener, tag string) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := io.WriteString(c, tag); err == nil {
					io.Copy(c, c)
				}
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
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
