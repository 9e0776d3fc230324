package rtcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
	"rtcp/protocol/plan5"
)

// Tests of time: keepalive, handshake timeout, backoff and shutdown, in a
// synctest bubble over a memnet.Listener, so that an hour passes in no time and
// every duration measured is exact.

const faultDP = "dp.test:9000"

// serveFault runs dp on n; stop closes both.
func serveFault(t *testing.T, dp *DiscoverPoint, n *memnet.Listener) (stop func()) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- dp.Serve(n) }()
	return func() {
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("Serve returned %v, want ErrDiscoverPointClosed", err)
		}
		n.CutAll()
	}
}

// dialAccept opens a session with d and returns both of its ends.
func dialAccept(t *testing.T, d *Dialer, l net.Listener, addr, name string) (client, server net.Conn) {
	t.Helper()
	client, server, err := dialAccepted(d, l, addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return client, server
}

// dialAccepted opens a session with d, accepting it on l, and returns
// both of its ends, or an error (nettest's MakePipe).
func dialAccepted(d *Dialer, l net.Listener, addr, name string) (client, server net.Conn, err error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	client, err = d.DialContext(context.Background(), addr, name)
	if err != nil {
		return nil, nil, fmt.Errorf("Dial: %w", err) // Accept ends with l

	}
	r := <-ch
	if r.err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("Accept: %w", r.err)
	}
	return client, r.c, nil
}

// exchange sends msg from a to b and back, and fails the test if it does
// not arrive.
func exchange(t *testing.T, a, b net.Conn, msg string) {
	t.Helper()
	for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
		go p[0].Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(p[1], buf); err != nil || string(buf) != msg {
			t.Fatalf("exchange: got %q, %v; want %q", buf, err, msg)
		}
	}
}

type readResult struct {
	err     error
	elapsed time.Duration
}

// readEnd reads c until it fails and reports the error and when.
func readEnd(c net.Conn) <-chan readResult {
	start := time.Now()
	ch := make(chan readResult, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF // io.Copy hides it
		}
		ch <- readResult{err, time.Since(start)}
	}()
	return ch
}

// wantCut checks that a session end failed with an error, not io.EOF,
// within limit.
func wantCut(t *testing.T, who string, r readResult, limit time.Duration) {
	t.Helper()
	if errors.Is(r.err, io.EOF) {
		t.Errorf("%s: the session ended with io.EOF, as if complete; want an error", who)
	}
	if r.elapsed > limit {
		t.Errorf("%s: the session ended %v after the fault, want within %v", who, r.elapsed, limit)
	}
	t.Logf("%s: cut after %v: %v", who, r.elapsed, r.err)
}

// TestKeepAliveSilentServerLink: a server's path to the DP starts dropping
// everything; the server and the DP (which cuts the client) notice within
// twice the keepalive period, for each server transport.
func TestKeepAliveSilentServerLink(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		t.Run(tr.String(), func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testSilentServerLink(t, tr) }) })
	}
}

func testSilentServerLink(t *testing.T, tr Transport) {
	n := memnet.New(faultDP)
	dp := &DiscoverPoint{KeepAlive: time.Second, Logger: testLogger()}
	stop := serveFault(t, dp, n)
	defer stop()
	lc := ListenConfig{Transport: tr, KeepAlive: time.Second, Dial: n.TapDialer("server"),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	l, err := lc.Listen(context.Background(), faultDP, "printer")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := &Dialer{KeepAlive: time.Second, Dial: n.TapDialer("client")}
	c, sc := dialAccept(t, d, l, faultDP, "printer")
	defer c.Close()
	defer sc.Close()

	// Ten minutes of quiet: heartbeats keep every link up.
	time.Sleep(10 * time.Minute)
	synctest.Wait()
	exchange(t, c, sc, "after ten minutes")

	// The server's path now drops everything, silently.
	n.Last("server").Blackhole()
	server, client := readEnd(sc), readEnd(c)
	wantCut(t, "server", <-server, 2*time.Second)
	wantCut(t, "client", <-client, 2*time.Second)

	// The server dials again and serves its name once more.
	time.Sleep(time.Second)
	synctest.Wait()
	if got := n.Dials("server"); len(got) < 2 {
		t.Fatalf("the server dialled the DP %d times, want it to dial again", len(got))
	}
	c2, sc2 := dialAccept(t, d, l, faultDP, "printer")
	exchange(t, c2, sc2, "back")
	c2.Close()
	sc2.Close()
}

func TestKeepAliveSilentClient(t *testing.T) {
	for _, tt := range []struct {
		name   string
		period time.Duration // the client's keepalive; the DP's is 1 s
	}{
		{"client slower", 3 * time.Second},
		// Both ends give the link up at the same instant: the client's
		// close may reach the DP before the DP's own silence timeout, and
		// a write then finds the link closed.
		{"same period", time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := memnet.New(faultDP)
				dp := &DiscoverPoint{KeepAlive: time.Second}
				stop := serveFault(t, dp, n)
				defer stop()
				lc := ListenConfig{Dial: n.TapDialer("server")} // the default, 15 s
				l, err := lc.Listen(context.Background(), faultDP, "printer")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				d := &Dialer{KeepAlive: tt.period, Dial: n.TapDialer("client")}
				c, sc := dialAccept(t, d, l, faultDP, "printer")
				defer c.Close()
				defer sc.Close()

				// The client's path drops everything: the client notices
				// within twice its own period, the DP within twice its
				// own, and the DP cuts the server's end of the session.
				n.Last("client").Blackhole()
				client, server := readEnd(c), readEnd(sc)
				wantCut(t, "client", <-client, 2*tt.period)
				wantCut(t, "server", <-server, 2*time.Second)
				synctest.Wait()
				if st := dp.Stats(); st.Links != 1 {
					t.Errorf("after a client's link died the DP has %d server links, want the 1 still up", st.Links)
				}
			})
		})
	}
}

// TestHeartBeatWire is the wire of SPEC.md's HeartBeat section, seen from a
// hand-written peer: no heartbeats for a peer that asks for none, and
// mid-link Alohas at the period asked for otherwise; a peer that announced
// heartbeats is held to the DP's period.
func TestHeartBeatWire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{KeepAlive: time.Second}
		stop := serveFault(t, dp, n)
		defer stop()
		dial := n.TapDialer("plain")

		// A plain server: no HeartBeat.
		c, err := dial(context.Background(), "tcp", faultDP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "plain"}))
		r := plan5.NewReader(c, 0)
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := m.(*plan5.Aloha); !ok || a.HeartBeat != 1000 {
			t.Fatalf("the DP's Aloha is %+v, want HeartBeat 1000", m)
		}
		c.SetReadDeadline(time.Now().Add(time.Hour))
		if m, err := r.ReadMessage(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a plain peer got %v, %v in an hour; want nothing at all", m, err)
		}
		if st := dp.Stats(); st.Links != 1 {
			t.Fatalf("a quiet plain peer's link is gone: %+v", st)
		}

		// A peer that asks for a heartbeat every 500 ms.
		h, err := dial(context.Background(), "tcp", faultDP)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		h.Write(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "beating", HeartBeat: 500}))
		start := time.Now()
		buf := make([]byte, 4096)
		var got []string
		var at []time.Duration
		for {
			k, err := h.Read(buf)
			if err != nil {
				break
			}
			got = append(got, string(buf[:k]))
			at = append(at, time.Since(start))
		}
		end := time.Since(start)
		if len(got) < 4 {
			t.Fatalf("got %q; want the DP's Aloha and then heartbeats", got)
		}
		const beat = "0\n{\"V\":10000,\"R\":4,\"N\":\"rtcp\"}\n"
		for i, s := range got[1:] {
			if s != beat {
				t.Errorf("heartbeat %d is %q, want %q", i, s, beat)
			}
			if want := time.Duration(i+1) * 500 * time.Millisecond; at[i+1] != want {
				t.Errorf("heartbeat %d came at %v, want %v", i, at[i+1], want)
			}
		}
		// It announced heartbeats and sent none: the DP gives it up after
		// twice its own period.
		if end > 2*time.Second || end < 2*time.Second*15/16 {
			t.Errorf("the DP dropped a silent peer after %v, want within (1.875 s, 2 s]", end)
		}
	})
}

func TestHandshakeTimeoutIdleConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{HandshakeTimeout: 10 * time.Second}
		stop := serveFault(t, dp, n)
		defer stop()

		// 1000 connections that never say a word.
		idle := make([]net.Conn, 1000)
		for i := range idle {
			c, err := n.DialContext(context.Background(), "tcp", faultDP)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			idle[i] = c
		}
		// Everyone else is served meanwhile.
		lc := ListenConfig{Dial: n.TapDialer("server")}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		d := &Dialer{Dial: n.TapDialer("client")}
		c, sc := dialAccept(t, d, l, faultDP, "printer")
		defer c.Close()
		defer sc.Close()
		exchange(t, c, sc, "while 1000 connections idle")

		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		if st := dp.Stats(); st.Conns < 1000 {
			t.Fatalf("%d connections open just before the handshake timeout, want all 1000 idle ones and more", st.Conns)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		for i, c := range idle {
			got, err := io.ReadAll(c)
			if err != nil || !strings.Contains(string(got), "bad handshake") {
				t.Fatalf("idle connection %d got %q, %v; want a refusal, then the end", i, got, err)
			}
		}
		synctest.Wait() // the DP's goroutines forget the connections they closed
		st := dp.Stats()
		if st.Refused["handshake"] != 1000 {
			t.Errorf("Refused[handshake] = %d, want 1000", st.Refused["handshake"])
		}
		if st.Conns != 2 || st.Links != 1 || st.Sessions != 1 {
			t.Errorf("after the timeout: %+v; want the server's link and the client's session only", st)
		}
		exchange(t, c, sc, "after")
	})
}

func TestListenerBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := new(DiscoverPoint)
		stop := serveFault(t, dp, n)
		defer stop()
		const minB, maxB = 100 * time.Millisecond, 2 * time.Second
		lc := ListenConfig{Dial: n.TapDialer("server"), MinBackoff: minB, MaxBackoff: maxB}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				t.Errorf("Accept failed while the DP was away: %v", err)
				return
			}
			accepted <- c
		}()

		// The DP goes away for a minute.
		n.SetDown("server", true)
		n.Last("server").Cut()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-accepted:
			t.Fatal("Accept returned while the DP was away")
		default:
		}
		tries := n.Dials("server")[1:]
		if len(tries) < 10 || len(tries) > 200 {
			t.Fatalf("%d dials in a minute without a DP, want a handful (backoff between 100 ms and 2 s)", len(tries))
		}
		var longest time.Duration
		for i := 1; i < len(tries); i++ {
			gap := tries[i].Sub(tries[i-1])
			bound := minB
			for range i - 1 {
				bound = min(2*bound, maxB)
			}
			if gap <= 0 || gap > bound {
				t.Errorf("wait before dial %d was %v, want in (0, %v]", i, gap, bound)
			}
			longest = max(longest, gap)
		}
		if longest <= minB {
			t.Errorf("the longest wait was %v: the backoff does not grow", longest)
		}

		// The DP is back: the server registers again and Accept returns
		// the next session.
		n.SetDown("server", false)
		time.Sleep(maxB)
		synctest.Wait()
		if l.(*Listener).NumLinks() != 1 {
			t.Fatalf("%d links after the DP came back, want 1", l.(*Listener).NumLinks())
		}
		c, err := (&Dialer{Dial: n.TapDialer("client")}).DialContext(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := <-accepted
		defer sc.Close()
		exchange(t, c, sc, "hello again")
	})
}

func TestShutdownWaitsForSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := new(DiscoverPoint)
		stop := serveFault(t, dp, n)
		defer stop()
		lc := ListenConfig{Dial: n.TapDialer("server")}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		d := &Dialer{Dial: n.TapDialer("client")}
		c, sc := dialAccept(t, d, l, faultDP, "printer")

		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- dp.Shutdown(ctx) }()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a session open", err)
		default:
		}
		if _, err := d.DialContext(context.Background(), faultDP, "printer"); err == nil {
			t.Fatal("a new session was accepted during Shutdown")
		}
		exchange(t, c, sc, "finishing up")
		c.Close()
		sc.Close()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown = %v once the last session ended, want nil", err)
		}
	})
}

func TestShutdownGraceOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := new(DiscoverPoint)
		stop := serveFault(t, dp, n)
		defer stop()
		lc := ListenConfig{Dial: n.TapDialer("server")}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		d := &Dialer{Dial: n.TapDialer("client")}
		c, sc := dialAccept(t, d, l, faultDP, "printer")
		defer c.Close()
		defer sc.Close()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		client, server := readEnd(c), readEnd(sc)
		if err := dp.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("Shutdown took %v, want the 5 s grace", d)
		}
		// The sessions still open were cut: an error at both ends.
		wantCut(t, "client", <-client, 5*time.Second+time.Second)
		wantCut(t, "server", <-server, 5*time.Second+time.Second)
	})
}

// TestListenerCloseLeavesSessions: Close stops accepting, the sessions
// already accepted go on, and the link ends with the last of them.
func TestListenerCloseLeavesSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := new(DiscoverPoint)
		stop := serveFault(t, dp, n)
		defer stop()
		lc := ListenConfig{Dial: n.TapDialer("server")}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		d := &Dialer{Dial: n.TapDialer("client")}
		c, sc := dialAccept(t, d, l, faultDP, "printer")
		defer c.Close()
		l.Close()
		synctest.Wait()
		exchange(t, c, sc, "still talking")
		if st := dp.Stats(); st.Links != 1 {
			t.Fatalf("the link is gone while its session is open: %+v", st)
		}
		if _, err := d.DialContext(context.Background(), faultDP, "printer"); err == nil {
			t.Fatal("a closed listener accepted a new session")
		}
		sc.Close()
		synctest.Wait()
		if st := dp.Stats(); st.Links != 0 || st.Servers != 0 {
			t.Fatalf("the link outlived its last session: %+v", st)
		}
	})
}
