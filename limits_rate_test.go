package rtcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
	"rtcp/internal/tcpreset"
)

// countWriter counts what is written to it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// runPaced moves bytes through conns paced sessions of each bucket, in
// the direction toServer (Write) or toClient (Read), for 10 s of
// synctest time, and returns the bytes each bucket's sessions moved.
func runPaced(t *testing.T, buckets []*limitBucket, conns int, toServer bool) []int64 {
	dp := new(DiscoverPoint)
	dp.init()
	moved := make([]atomic.Int64, len(buckets))
	var pcs []net.Conn
	var wg sync.WaitGroup
	for i, b := range buckets {
		for range conns {
			server, relayEnd := net.Pipe()
			pc := dp.paced(server, []*limitBucket{b})
			pcs = append(pcs, pc, relayEnd)
			chunk := make([]byte, 64<<10)
			if toServer { // the relay writes the client's bytes to pc
				wg.Go(func() {
					for {
						if _, err := pc.Write(chunk); err != nil {
							return
						}
					}
				})
				wg.Go(func() { io.Copy(countWriter{&moved[i]}, relayEnd) })
			} else { // the server writes, the relay reads pc
				wg.Go(func() {
					for {
						if _, err := relayEnd.Write(chunk); err != nil {
							return
						}
					}
				})
				wg.Go(func() { io.Copy(countWriter{&moved[i]}, pc) })
			}
		}
	}
	time.Sleep(10 * time.Second)
	got := make([]int64, len(buckets))
	for i := range moved {
		got[i] = moved[i].Load()
	}
	for _, c := range pcs {
		c.Close()
	}
	wg.Wait()
	dp.Close()
	return got
}

// TestPacedRate checks, in synctest time, that a name's BytesPerSecond
// holds within 10 % over 10 s in each direction, with 1 and 8 sessions
// sharing it, and that another name, with a limit of its own, keeps its
// own rate beside it.
func TestPacedRate(t *testing.T) {
	const rateA, rateB = 1 << 20, 4 << 20
	for _, conns := range []int{1, 8} {
		for _, toServer := range []bool{true, false} {
			synctest.Test(t, func(t *testing.T) {
				a := newLimitBucket(Limits{BytesPerSecond: rateA})
				b := newLimitBucket(Limits{BytesPerSecond: rateB})
				got := runPaced(t, []*limitBucket{a, b}, conns, toServer)
				t.Logf("%d sessions, to server %v: %d and %d bytes in 10 s", conns, toServer, got[0], got[1])
				for i, want := range []int64{10 * rateA, 10 * rateB} {
					if d := float64(got[i]-want) / float64(want); d < -0.1 || d > 0.1 {
						t.Errorf("%d sessions, to server %v: name %d moved %d bytes in 10 s, want %d within 10%% (%+.1f%%)",
							conns, toServer, i, got[i], want, 100*d)
					}
				}
			})
		}
	}
}

// limitsDP runs a DP whose Policy limits names and a key, with a server
// that echoes on each name.
func limitsDP(t *testing.T) (*DiscoverPoint, string, *Credential) {
	bob := &Credential{Key: "bob", Secret: bytes.Repeat([]byte("b"), 32)}
	dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
		Keys:             map[string][]byte{bob.Key: bob.Secret},
		AnonymousServers: true, AnonymousClients: true,
		Names: []NameRule{
			{Name: "one", Limits: Limits{MaxSessions: 1}},
			{Name: "rate", Limits: Limits{SessionsPerSecond: 0.001}}, // one, then none for 1000 s
			{Name: "slow", Limits: Limits{BytesPerSecond: 256 << 10}},
		},
		KeyLimits: map[string]Limits{"bob": {MaxSessions: 1}},
	}}
	addr := startDP(t, dp)
	for _, name := range []string{"one", "rate", "slow", "any"} {
		echo(t, listen(t, nil, addr, name))
	}
	return dp, addr, bob
}

// TestLimitRefusals checks that a session over a name's MaxSessions or
// SessionsPerSecond, or over its client key's MaxSessions, is refused
// with ErrRefused and counted by reason, and that others go on.
func TestLimitRefusals(t *testing.T) {
	dp, addr, bob := limitsDP(t)
	ctx := context.Background()
	dial := func(d *Dialer, name string) (net.Conn, error) {
		c, err := d.DialContext(ctx, addr, name)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	anon, asBob := new(Dialer), &Dialer{Credential: bob}
	for _, tt := range []struct {
		what   string
		d      *Dialer
		name   string
		reason string
	}{
		{"a name's max_sessions", anon, "one", "limit_sessions"},
		{"a name's sessions_per_second", anon, "rate", "limit_session_rate"},
		{"a key's max_sessions", asBob, "any", "limit_sessions"},
	} {
		before := dp.Stats().Refused[tt.reason]
		if _, err := dial(tt.d, tt.name); err != nil {
			t.Fatalf("%s: the first session: %v", tt.what, err)
		}
		_, err := dial(tt.d, tt.name)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: the second session: %v, want ErrRefused", tt.what, err)
		}
		if got := dp.Stats().Refused[tt.reason] - before; got != 1 {
			t.Errorf("%s: %d refusals counted as %s, want 1", tt.what, got, tt.reason)
		}
	}
	// Others are not held to those limits.
	if _, err := dial(anon, "any"); err != nil {
		t.Errorf("an anonymous client of a name without limits: %v", err)
	}
}

// TestLimitPacesThroughDP sends 512 KiB through a name paced at
// 256 KiB/s: it takes at least as long as the limit allows, and every
// byte arrives.
func TestLimitPacesThroughDP(t *testing.T) {
	dp, addr, _ := limitsDP(t)
	c, err := Dial(addr, "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	const size, rate = 512 << 10, 256 << 10
	msg := bytes.Repeat([]byte("x"), size)
	start := time.Now()
	go func() {
		c.Write(msg)
		c.(*Conn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, size)
	}
	// Each direction may run a burst (a tenth of the rate, at least
	// 16 KiB) ahead; the echo's two directions overlap.
	if least := time.Duration(float64(size-(32<<10)) / rate * float64(time.Second)); elapsed < least {
		t.Errorf("512 KiB at 256 KiB/s took %v, want at least %v", elapsed, least)
	}
	if dp.Stats().PacedSeconds <= 0 {
		t.Error("Stats.PacedSeconds is 0 after a paced session")
	}
}

// TestLimitsValidate checks that the Policy refuses bad limits.
func TestLimitsValidate(t *testing.T) {
	for _, p := range []*Policy{
		{Names: []NameRule{{Name: "a", Limits: Limits{BytesPerSecond: -1}}}},
		{Names: []NameRule{{Name: "a", Limits: Limits{MaxSessions: -1}}}},
		{Names: []NameRule{{Name: "a", Limits: Limits{SessionsPerSecond: -0.5}}}},
		{KeyLimits: map[string]Limits{"nobody": {MaxSessions: 1}}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

// TestLimitsSetPolicy checks that a policy changed with SetPolicy keeps
// counting the sessions open under the old one.
func TestLimitsSetPolicy(t *testing.T) {
	dp, addr, bob := limitsDP(t)
	c, err := Dial(addr, "one")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pol := *dp.Policy
	pol.Names = append([]NameRule{{Name: "one", Limits: Limits{MaxSessions: 2}}}, pol.Names[1:]...)
	pol.KeyLimits = map[string]Limits{bob.Key: {MaxSessions: 1}}
	if err := dp.SetPolicy(&pol); err != nil {
		t.Fatal(err)
	}
	c2, err := Dial(addr, "one")
	if err != nil {
		t.Fatalf("a second session under max_sessions 2: %v", err)
	}
	defer c2.Close()
	if c3, err := Dial(addr, "one"); !errors.Is(err, ErrRefused) {
		if err == nil {
			c3.Close()
		}
		t.Errorf("a third session under max_sessions 2: %v, want ErrRefused", err)
	}
}

// TestLimitsThroughDPSynctest runs a DP on an in-memory network in
// synctest time: a name limited to 1 MiB/s moves 10 MiB in 10 s within
// 10 %, with 1 and 8 sessions, while another name beside it, limited to
// 2 MiB/s, keeps its own rate (yamux links and raw clients).
func TestLimitsThroughDPSynctest(t *testing.T) {
	const rateSlow, rateOther = 1 << 20, 2 << 20
	for _, conns := range []int{1, 8} {
		synctest.Test(t, func(t *testing.T) {
			n := memnet.New(delayDP)
			dp := &DiscoverPoint{Policy: &Policy{AnonymousServers: true, AnonymousClients: true, Names: []NameRule{
				{Name: "slow", Limits: Limits{BytesPerSecond: rateSlow}},
				{Name: "other", Limits: Limits{BytesPerSecond: rateOther}},
			}}}
			served := make(chan error, 1)
			go func() { served <- dp.Serve(n) }()
			var wg sync.WaitGroup
			var mu sync.Mutex // guards closers
			var closers []io.Closer
			keep := func(c io.Closer) {
				mu.Lock()
				defer mu.Unlock()
				closers = append(closers, c)
			}
			received := map[string]*atomic.Int64{"slow": new(atomic.Int64), "other": new(atomic.Int64)}
			for name, got := range received {
				l, err := (&ListenConfig{Dial: n.Dialer("server", 0), Transport: TransportYamux}).Listen(context.Background(), delayDP, name)
				if err != nil {
					t.Fatal(err)
				}
				keep(l)
				wg.Go(func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						keep(c)
						wg.Go(func() { io.Copy(countWriter{got}, c) })
					}
				})
			}
			d := Dialer{Dial: n.Dialer("client", 0), Transport: TransportYamux}
			dial := func(name string) {
				c, err := d.DialContext(context.Background(), delayDP, name)
				if err != nil {
					t.Fatal(err)
				}
				keep(c)
				wg.Go(func() {
					chunk := make([]byte, 32<<10)
					for {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				})
			}
			for range conns {
				dial("slow")
			}
			dial("other")
			synctest.Wait()
			start := map[string]int64{"slow": received["slow"].Load(), "other": received["other"].Load()}
			time.Sleep(10 * time.Second)
			for name, want := range map[string]int64{"slow": 10 * rateSlow, "other": 10 * rateOther} {
				got := received[name].Load() - start[name]
				t.Logf("%d sessions of slow: %s moved %d bytes in 10 s", conns, name, got)
				if d := float64(got-want) / float64(want); d < -0.1 || d > 0.1 {
					t.Errorf("%d sessions of slow: %s moved %d bytes in 10 s, want %d within 10%% (%+.1f%%)", conns, name, got, want, 100*d)
				}
			}
			dp.Close()
			if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
				t.Errorf("Serve returned %v", err)
			}
			synctest.Wait() // the accept loops have seen their links go
			mu.Lock()
			for _, c := range closers {
				c.Close()
			}
			mu.Unlock()
			n.CutAll()
			wg.Wait()
		})
	}
}

// TestLimitedSessionEndsCleanly: a session of a name under Limits, on the
// tcp transport, ends with every byte delivered and no reset, as one
// without limits does (the relay clears the data link's reset on a clean
// end through the paced wrapper).
func TestLimitedSessionEndsCleanly(t *testing.T) {
	for _, lim := range []Limits{{MaxSessions: 100}, {BytesPerSecond: 1 << 40}} {
		dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
			AnonymousServers: true, AnonymousClients: true,
			Names: []NameRule{{Name: "sink", Limits: lim}},
		}}
		addr := startDP(t, dp)
		l := listen(t, &ListenConfig{Transport: TransportTCP}, addr, "sink")
		const size = 2 << 20
		sent := make(chan struct{})
		got := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				got <- err
				return
			}
			defer c.Close()
			c.(*Conn).CloseWrite()
			<-sent // the client has written everything and closed
			b, err := io.ReadAll(c)
			if err == nil && len(b) != size {
				err = fmt.Errorf("read %d bytes, want %d", len(b), size)
			}
			got <- err
		}()
		c, err := (&Dialer{Transport: TransportTCP}).DialContext(context.Background(), addr, "sink")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		close(sent)
		if err := <-got; err != nil {
			t.Errorf("%+v: the server's read: %v", lim, err)
		}
	}
}

// TestSetPolicyRepaces: a SetPolicy changes the pace of the sessions
// open: a bandwidth limit changed takes effect on their limiters, and one
// removed lets them run free.
func TestSetPolicyRepaces(t *testing.T) {
	dp, addr, _ := limitsDP(t)
	c, err := Dial(addr, "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dp.limits.mu.Lock()
	lr := dp.limits.names["slow"].toServer
	dp.limits.mu.Unlock()
	if lr == nil || lr.Limit() != 256<<10 {
		t.Fatalf("the open session's limiter: %v, want 256 KiB/s", lr)
	}
	pol := *dp.Policy
	pol.Names = []NameRule{{Name: "slow", Limits: Limits{BytesPerSecond: 1 << 20}}}
	if err := dp.SetPolicy(&pol); err != nil {
		t.Fatal(err)
	}
	if got := lr.Limit(); got != 1<<20 {
		t.Errorf("after a new limit the open session's limiter is at %v, want 1 MiB/s", got)
	}
	pol.Names = nil
	if err := dp.SetPolicy(&pol); err != nil {
		t.Fatal(err)
	}
	if got := lr.Limit(); got != rate.Inf {
		t.Errorf("after the limit was removed the open session's limiter is at %v, want none", got)
	}
}

// activeLimited returns the sessions counted in the Limits of name.
func activeLimited(dp *DiscoverPoint, name string) int {
	dp.limits.mu.Lock()
	defer dp.limits.mu.Unlock()
	if b := dp.limits.names[name]; b != nil {
		return b.active
	}
	return 0
}

// TestLimitsOfSessionsUnwrapped: a session of a name under limits of
// sessions alone (MaxSessions, SessionsPerSecond) is the link's own
// connection, whose fast paths the relay takes (a tcp data link splices),
// not a pacedConn; one under a BytesPerSecond is paced. Either way it is
// counted until openRequested's endSession, and released there once:
// closing the connection releases nothing, and each end frees one place
// under MaxSessions, over and over.
func TestLimitsOfSessionsUnwrapped(t *testing.T) {
	for _, tr := range []Transport{TransportTCP, TransportYamux, TransportJSON} {
		t.Run(tr.String(), func(t *testing.T) {
			dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
				AnonymousServers: true, AnonymousClients: true,
				Names: []NameRule{
					{Name: "count", Limits: Limits{MaxSessions: 2, SessionsPerSecond: 1e6}},
					{Name: "paced", Limits: Limits{MaxSessions: 2, BytesPerSecond: 1 << 30}},
				},
			}}
			addr := startDP(t, dp)
			for _, name := range []string{"count", "paced"} {
				echo(t, listen(t, &ListenConfig{Transport: tr}, addr, name))
			}
			type session struct {
				is, client net.Conn
				end        func()
			}
			open := func(name string) (session, error) {
				client, door := net.Pipe()
				is, end, err := dp.openRequested(&sessionRequest{conn: door, name: name, addr: door.RemoteAddr()})
				if err != nil {
					client.Close()
					door.Close()
					return session{}, err
				}
				// Before the echo's cleanup, which waits for its sessions.
				t.Cleanup(func() { is.Close(); client.Close(); door.Close() })
				return session{is, client, end}, nil
			}
			for _, name := range []string{"count", "paced"} {
				var open2 [2]session
				for round := range 20 {
					for i := range open2 {
						if open2[i].is != nil {
							continue
						}
						s, err := open(name)
						if err != nil {
							t.Fatalf("%s, round %d: session %d under max_sessions 2: %v", name, round, i, err)
						}
						open2[i] = s
					}
					if _, err := open(name); err == nil {
						t.Fatalf("%s, round %d: a third session under max_sessions 2 opened", name, round)
					}
					if got := activeLimited(dp, name); got != 2 {
						t.Fatalf("%s, round %d: %d sessions counted, want 2", name, round, got)
					}
					s := open2[round%2]
					_, paced := s.is.(*pacedConn)
					if want := name == "paced"; paced != want {
						t.Fatalf("%s: the server's side of the session is a %T, paced %v, want paced %v", name, s.is, paced, want)
					}
					if tr == TransportTCP && !paced && tcpreset.Of(s.is) == nil {
						t.Fatalf("%s: the server's side of the session, a %T, has no TCP connection to splice", name, s.is)
					}
					if paced && tcpreset.Of(s.is) != nil {
						// The relay would splice the TCP connection
						// under it (copyTCP: a burst whole), past
						// its limiter.
						t.Fatalf("%s: the paced side of the session, a %T, gives the relay its TCP connection to splice", name, s.is)
					}
					s.is.Close()
					if got := activeLimited(dp, name); got != 2 {
						t.Fatalf("%s, round %d: %d sessions counted after one's connection closed, want 2 until it ends", name, round, got)
					}
					s.end()
					if got := activeLimited(dp, name); got != 1 {
						t.Fatalf("%s, round %d: %d sessions counted after one ended, want 1", name, round, got)
					}
					open2[round%2] = session{}
				}
				for _, s := range open2 {
					if s.is != nil {
						s.is.Close()
						s.end()
					}
				}
				if got := activeLimited(dp, name); got != 0 {
					t.Errorf("%s: %d sessions counted after all ended, want 0", name, got)
				}
			}
		})
	}
}

// TestLimitsReleasedEveryDoor: through every door (a JSON leg, a raw
// leg, port mode, Relay, the web doors' openWeb), a session under limits
// of sessions alone is counted while it is open, refused over
// MaxSessions, and released once when it ends, so that the next one
// opens, over and over; in synctest time on an in-memory network.
func TestLimitsReleasedEveryDoor(t *testing.T) {
	for _, server := range []Transport{TransportYamux, TransportJSON} {
		synctest.Test(t, func(t *testing.T) {
			n := memnet.New(delayDP)
			port := memnet.New("port.delay:22")
			dp := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{
				AnonymousServers: true, AnonymousClients: true,
				Names: []NameRule{{Name: "count", Limits: Limits{MaxSessions: 1, SessionsPerSecond: 1e6}}},
			}}
			served := make(chan error, 2)
			go func() { served <- dp.Serve(n) }()
			go func() { served <- dp.ServePort(port, "count") }()
			l, err := (&ListenConfig{Dial: n.Dialer("server", 0), Transport: server}).Listen(context.Background(), delayDP, "count")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					wg.Go(func() { defer c.Close(); io.Copy(c, c) })
				}
			})
			ctx := context.Background()
			doors := []struct {
				name string
				dial func() (net.Conn, error)
			}{
				{"json leg", func() (net.Conn, error) {
					return (&Dialer{Dial: n.Dialer("client", 0)}).DialContext(ctx, delayDP, "count")
				}},
				{"raw leg", func() (net.Conn, error) {
					return (&Dialer{Dial: n.Dialer("client", 0), Transport: TransportYamux}).DialContext(ctx, delayDP, "count")
				}},
				{"port mode", func() (net.Conn, error) { return port.DialContext(ctx, "tcp", "") }},
				{"Relay", func() (net.Conn, error) {
					c, door := net.Pipe()
					wg.Go(func() { dp.Relay(door, "count", "relayed") })
					return c, nil
				}},
				{"web", func() (net.Conn, error) {
					return dp.openWeb(ctx, "count", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
				}},
			}
			// open opens a session through door and has it echo a byte:
			// an error if the door or the session refused it.
			open := func(dial func() (net.Conn, error)) (net.Conn, error) {
				c, err := dial()
				if err != nil {
					return nil, err
				}
				b := []byte{'x'}
				if _, err = c.Write(b); err == nil {
					_, err = io.ReadFull(c, b)
				}
				if err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
			}
			for _, door := range doors {
				for round := range 5 {
					c, err := open(door.dial)
					if err != nil {
						t.Fatalf("%v server, %s, round %d: the session under max_sessions 1: %v", server, door.name, round, err)
					}
					if got := activeLimited(dp, "count"); got != 1 {
						t.Errorf("%v server, %s, round %d: %d sessions counted while one is open, want 1", server, door.name, round, got)
					}
					if c2, err := open(door.dial); err == nil {
						c2.Close()
						t.Errorf("%v server, %s, round %d: a second session under max_sessions 1 opened", server, door.name, round)
					}
					c.Close()
					synctest.Wait() // the DP has seen the session end
					if got := activeLimited(dp, "count"); got != 0 {
						t.Fatalf("%v server, %s, round %d: %d sessions counted after the session ended, want 0", server, door.name, round, got)
					}
				}
			}
			if s := dp.Stats().Sessions; s != 0 {
				t.Errorf("%d sessions at the DP after all ended", s)
			}
			dp.Close()
			for range 2 {
				if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
					t.Errorf("Serve returned %v", err)
				}
			}
			l.Close()
			n.CutAll()
			wg.Wait()
		})
	}
}

// TestPacedSessionCutWhenDPCloses: a paced session whose client's bytes
// wait for their pace when the DP closes (Close ends the DP's context
// before it cuts the connections) ends with an error, not as a session
// that ended cleanly with its bytes still on their way.
func TestPacedSessionCutWhenDPCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := new(DiscoverPoint)
		dp.init()
		b := newLimitBucket(Limits{BytesPerSecond: minBytesBurst})
		server, serverPeer := net.Pipe()
		client, clientPeer := net.Pipe()
		pc := dp.paced(server, []*limitBucket{b})
		go io.Copy(io.Discard, serverPeer)
		go io.Copy(io.Discard, clientPeer)
		go clientPeer.Write(make([]byte, 1<<20)) // ends when the relay closes client
		joined := make(chan error, 1)
		go func() {
			_, err := dp.join(context.Background(), client, pc, "slow", nil)
			joined <- err
		}()
		synctest.Wait() // the client's bytes wait for their pace
		dp.cancel()
		if err := <-joined; err == nil {
			t.Error("the relay of a paced session ended cleanly when the DP closed under it, want an error")
		}
		serverPeer.Close()
		clientPeer.Close()
		dp.Close()
	})
}
