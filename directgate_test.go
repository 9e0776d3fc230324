package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/punch"
	"rtcp/protocol/plan5"
)

// TestPunchGateNear: a punch is held back only where the round trip to
// the DP is known and under nearDP.
func TestPunchGateNear(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		near bool
	}{
		{0, false}, // not known
		{-time.Millisecond, false},
		{50 * time.Microsecond, true},
		{nearDP - time.Nanosecond, true},
		{nearDP, false},
		{2 * time.Millisecond, false},
		{20 * time.Millisecond, false},
	} {
		for _, onRead := range []bool{false, true} {
			if got := newPunchGate(tc.rtt, onRead) != nil; got != tc.near {
				t.Errorf("newPunchGate(%v, %v) holds the punch back: %v; want %v", tc.rtt, onRead, got, tc.near)
			}
		}
	}
}

// TestPunchGateLongest: a held-back punch waits at most four round trips
// to the DP, within 0.5 and 2 ms.
func TestPunchGateLongest(t *testing.T) {
	for _, tc := range []struct{ rtt, want time.Duration }{
		{20 * time.Microsecond, minDefer},
		{125 * time.Microsecond, minDefer},
		{200 * time.Microsecond, 800 * time.Microsecond},
		{400 * time.Microsecond, 1600 * time.Microsecond},
		{nearDP - time.Nanosecond, maxDefer},
	} {
		if got := newPunchGate(tc.rtt, true).longest; got != tc.want {
			t.Errorf("a punch held back for a round trip of %v waits at most %v; want %v", tc.rtt, got, tc.want)
		}
	}
}

// TestPunchGateWait: a held-back punch starts as the session's first
// bytes cross (a Read with bytes on the client, a Write on the server,
// not the other way round, unless the other way moved bulkBytes), after deferFor if none do, and not at all, with
// the cause, if its context ends first; a nil gate holds nothing back.
func TestPunchGateWait(t *testing.T) {
	type step struct {
		at     time.Duration
		read   int // the side's Read returned so many bytes
		wrote  int // its Write wrote so many
		cancel bool
	}
	for _, tc := range []struct {
		name   string
		far    bool
		onRead bool
		steps  []step
		want   time.Duration // when wait returns
		cancel bool          // with the cause
	}{
		{name: "far", far: true, want: 0},
		{name: "client's first read", onRead: true, steps: []step{{at: 100 * time.Microsecond, wrote: 1}, {at: 200 * time.Microsecond, read: 0}, {at: 300 * time.Microsecond, read: 1}}, want: 300 * time.Microsecond},
		{name: "server's first write", steps: []step{{at: 100 * time.Microsecond, read: 1}, {at: 200 * time.Microsecond, wrote: 0}, {at: 400 * time.Microsecond, wrote: 5}}, want: 400 * time.Microsecond},
		{name: "client silent", onRead: true, steps: []step{{at: 100 * time.Microsecond, wrote: bulkBytes / 2}, {at: 200 * time.Microsecond, wrote: bulkBytes/2 - 1}}, want: deferFor(100 * time.Microsecond)},
		{name: "server silent", steps: []step{{at: 100 * time.Microsecond, read: bulkBytes - 1}}, want: deferFor(100 * time.Microsecond)},
		{name: "client's bulk write", onRead: true, steps: []step{{at: 100 * time.Microsecond, wrote: bulkBytes / 2}, {at: 200 * time.Microsecond, wrote: bulkBytes / 2}}, want: 200 * time.Microsecond},
		{name: "server's bulk read", steps: []step{{at: 100 * time.Microsecond, read: bulkBytes - 1}, {at: 300 * time.Microsecond, read: 1}}, want: 300 * time.Microsecond},
		{name: "stopped", onRead: true, steps: []step{{at: 100 * time.Microsecond, cancel: true}}, want: 100 * time.Microsecond, cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rtt := 100 * time.Microsecond
				if tc.far {
					rtt = 20 * time.Millisecond
				}
				g := newPunchGate(rtt, tc.onRead)
				cause := errors.New("the session was closed")
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				began := time.Now()
				go func() {
					for _, s := range tc.steps {
						time.Sleep(time.Until(began.Add(s.at)))
						if s.cancel {
							cancel(cause)
						}
						g.read(s.read)
						g.wrote(s.wrote)
					}
				}()
				err := g.wait(ctx)
				if took := time.Since(began); took != tc.want {
					t.Errorf("wait returned after %v; want %v", took, tc.want)
				}
				if tc.cancel {
					if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) || errors.Is(err, punch.ErrNoPath) {
						t.Errorf("wait: %v; want context.Canceled and the cause, not punch.ErrNoPath", err)
					}
				} else if err != nil {
					t.Errorf("wait: %v", err)
				}
			})
		})
	}
}

// TestPunchGateServerPath: a server's session with its DP near starts
// its punch at its first Write on the relay, not at the open nor at its
// first Read, and after deferFor if it writes nothing; a Close before then
// stops it before it begins, and says so, not that there is no path.
func TestPunchGateServerPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool // the server answers at 500 us
		close bool // the session is closed at 500 us instead
		want  time.Duration
	}{
		{name: "answers", write: true, want: 500 * time.Microsecond},
		{name: "silent", want: deferFor(400 * time.Microsecond)},
		{name: "closed", close: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				began := time.Now()
				punched := make(chan time.Duration, 1)
				side := &directSide{local: netip.MustParseAddrPort("127.0.0.1:1"), timeout: time.Second,
					ns: func(func() error) error {
						punched <- time.Since(began)
						return punch.ErrNoPath
					}}
				server, client := net.Pipe()
				defer client.Close()
				events := make(chan error, 1)
				cm := &plan5.Connect{N: "alice", Peer: "127.0.0.1:2", Secret: make([]byte, secretLen)}
				c := startServerPath(newConn(pipeStream{server}, nil), side, cm, func(err error) { events <- err }, newPunchGate(400*time.Microsecond, false))
				defer c.Close()
				go client.Write([]byte("d\x00\x01x")) // the client's first byte, a record
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(500 * time.Microsecond)
				synctest.Wait()
				select {
				case at := <-punched:
					t.Fatalf("the punch began at %v, before the server's first Write", at)
				default:
				}
				switch {
				case tc.write:
					go io.ReadFull(client, make([]byte, 4)) // its record
					if _, err := c.Write([]byte("y")); err != nil {
						t.Fatal(err)
					}
				case tc.close:
					c.Close()
					err := <-events
					if !errors.Is(err, context.Canceled) || !errors.Is(err, errPunchClosed) || errors.Is(err, punch.ErrNoPath) {
						t.Errorf("EventDirect: %v; want context.Canceled and %v, not punch.ErrNoPath", err, errPunchClosed)
					}
					synctest.Wait()
					select {
					case at := <-punched:
						t.Errorf("the punch began at %v, after Close", at)
					default:
					}
					return
				}
				if at := <-punched; at != tc.want {
					t.Errorf("the punch began at %v; want %v", at, tc.want)
				}
				if err := <-events; !errors.Is(err, punch.ErrNoPath) {
					t.Errorf("EventDirect: %v; want punch.ErrNoPath", err)
				}
			})
		})
	}
}

// TestPunchGateClientSession: a client's moving session opens its gate
// at its first Read that returns bytes, not at its Write (its request,
// whose answer is still to cross); through WriteTo too.
func TestPunchGateClientSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		relay, dp := net.Pipe()
		defer dp.Close()
		m := newMoveConn(pipeStream{relay}, nil, nil)
		m.gate = newPunchGate(100*time.Microsecond, true)
		defer m.Close()
		open := func() bool {
			select {
			case <-m.gate.crossed:
				return true
			default:
				return false
			}
		}
		go io.ReadFull(dp, make([]byte, 4))
		if _, err := m.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		if open() {
			t.Fatal("the gate opened at the client's Write")
		}
		go dp.Write([]byte("d\x00\x01a"))
		// Through WriteTo, as io.Copy reads: its writer ends the session
		// once the answer came.
		w := writerFunc(func(b []byte) (int, error) {
			if !open() {
				t.Error("the answer was handed on before the gate opened")
			}
			dp.Close()
			return len(b), nil
		})
		if n, err := m.WriteTo(w); n != 1 {
			t.Fatalf("WriteTo: %d bytes, %v; want 1", n, err)
		}
		if !open() {
			t.Error("the gate stayed shut after the client read its first answer")
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestDirectClientNearListensLate: a Dialer whose last dial found the DP
// near makes no punch listener while its dial waits for the DP's answer
// (its punch waits for the session's first bytes, and makes its own
// then): a connect to the client's port meanwhile is refused; nor does
// it ask for the DP's early offer. A dial that finds the DP far records
// that, and the next asks and listens early again
// (TestDirectClientListensBeforeAck).
func TestDirectClientNearListensLate(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	// A ManualAck server whose sessions wait for the test: the DP's
	// answer comes only once it says so. It does not take part, so no
	// early offer starts a punch.
	l := listen(t, &ListenConfig{Transport: TransportYamux, ManualAck: true}, addr, "printer-7")
	locals := make(chan netip.AddrPort, 2)
	listened := make(chan error, 2)
	d := localsDialer(locals)
	var sent recorded // what the dials wrote to the DP
	d.Dial = sent.dial(d.Dial)
	d.netns = func(f func() error) error {
		err := f()
		listened <- err
		return err
	}
	d.known.setNear(addr, true)
	dialed := make(chan error, 1)
	dial := func() {
		c, err := d.DialContext(context.Background(), addr, "printer-7")
		if c != nil {
			c.Close()
		}
		dialed <- err
	}
	go dial()
	local := <-locals
	sc, err := l.Accept() // the open came: the dial waits for the answer
	if err != nil {
		t.Fatal(err)
	}
	if pc, err := net.Dial("tcp", local.String()); err == nil {
		pc.Close()
		t.Error("a connect to the client's port was taken while its dial waited for a near DP's answer")
	}
	select {
	case err := <-listened:
		t.Errorf("the dial made a punch listener (%v) for a DP it knew near", err)
	default:
	}
	sc.(*Conn).Ack(nil)
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if w := sent.String(); !strings.Contains(w, `"Direct":true`) || strings.Contains(w, `"EarlyPeer"`) {
		t.Errorf("the dial to a DP known near wrote %q; want Direct, and no EarlyPeer", w)
	}

	// The same DP made far: the dial says so, for the next.
	d.Dial = farDP(d.Dial)
	go dial()
	<-locals
	if sc, err = l.Accept(); err != nil {
		t.Fatal(err)
	}
	sc.(*Conn).Ack(nil)
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if d.known.near(addr) {
		t.Error("a dial whose DP answered after 2*nearDP left it known near")
	}
}

// farDP returns dial with the DP put at a distance of 2*nearDP for the
// client's round trip: the first Read of each connection (the DP's
// Aloha) returns no sooner than that after its first Write (the
// client's Aloha), which the dial's measure starts before.
func farDP(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &farConn{Conn: c}, nil
	}
}

// farConn is a connection to a DP far away (farDP).
type farConn struct {
	net.Conn
	sent   sync.Once
	answer atomic.Int64 // its first Read returns no sooner (UnixNano), set at its first Write
	read   sync.Once
}

func (c *farConn) Write(b []byte) (int, error) {
	c.sent.Do(func() { c.answer.Store(time.Now().Add(2 * nearDP).UnixNano()) })
	return c.Conn.Write(b)
}

func (c *farConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Do(func() { time.Sleep(time.Until(time.Unix(0, c.answer.Load()))) }) // the path's delay, not a wait for an event
	return n, err
}

// recorded holds what the connections of its dial wrote.
type recorded struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (r *recorded) dial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &recordingConn{Conn: c, to: r}, nil
	}
}

func (r *recorded) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// recordingConn is a connection whose writes are recorded.
type recordingConn struct {
	net.Conn
	to *recorded
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.to.mu.Lock()
	c.to.buf.Write(b)
	c.to.mu.Unlock()
	return c.Conn.Write(b)
}

// TestDirectClientNearSlowAnswer: a Dialer judges a DP near by the
// same measure whether or not its dial asked for the early offer: the
// time to the open's answer. A DP near the client whose server takes
// longer than nearDP to answer (far from the DP, or an application
// that answers under ManualAck) is not near: the early offer gains the
// punch that time, and each dial asks for it, rather than every other
// one (the early offer comes a round trip to the DP after the Aloha,
// the answer without it only with the Ack: two measures, which made a
// Dialer flip between the two).
func TestDirectClientNearSlowAnswer(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
	d := &Dialer{Direct: true}
	var sent recorded // what the dials wrote to the DP
	d.Dial = sent.dial((&net.Dialer{Control: dpControl}).DialContext)
	for i := range 3 {
		done := dialAsync(context.Background(), d, addr, "printer-7")
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * nearDP) // the server's time to answer, not a wait for an event
		sc.(*Conn).Ack(nil)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.c.Close()
		sc.Close()
		if n := strings.Count(sent.String(), `"EarlyPeer":true`); n != i+1 {
			t.Fatalf("dial %d: %d of the dials asked for the early offer; want all, the open's answer taking 2*nearDP: %q", i+1, n, sent.String())
		}
		if d.known.near(addr) {
			t.Errorf("dial %d: the DP is known near, its open's answer taking 2*nearDP", i+1)
		}
	}
}

// TestPunchGateSilentSession: where the DP is near (loopback), a
// session in which neither side writes first (each waits for the other
// to speak) has both punches held back until deferFor, not for ever:
// both come up with the session silent, and its first exchange, either
// way, moves it whole.
func TestPunchGateSilentSession(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, addr, "printer-7")
	d := &Dialer{Direct: true}
	held := 0 // sessions whose punches were both held back
	for _, serverFirst := range []bool{false, true} {
		c, err := d.DialContext(context.Background(), addr, "printer-7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		client, server := c.(*Conn), sc.(*Conn)
		if client.s.(*moveConn).gate != nil && server.s.(*moveConn).gate != nil {
			held++
		}
		punched(client)
		server.DirectError() // its first use: it takes the session
		punched(server)
		if err := client.DirectError(); err != nil {
			t.Fatalf("the client's punch in a silent session: %v", err)
		}
		if err := server.DirectError(); err != nil {
			t.Fatalf("the server's punch in a silent session: %v", err)
		}
		first, second := net.Conn(client), net.Conn(server)
		if serverFirst {
			first, second = second, first
		}
		go func() { // it answers what it reads, and moves at its first Write
			io.Copy(second, second)
			second.(*Conn).CloseWrite()
		}()
		echoCheck(t, first, 64<<10)
		if !client.Direct() {
			t.Errorf("server first %v: the session stays on the relay: %v", serverFirst, client.DirectError())
		}
	}
	if held == 0 {
		// Load made loopback look far (a round trip over nearDP):
		// the punches started at once.
		t.Skip("no session had both its punches held back: the DP looked far under this load")
	}
}

// TestPunchGateClosedClient: a client's session closed before its held
// back punch began stops it before it begins, and says so, not that there
// is no path; the punch's goroutine ends (goleak).
func TestPunchGateClosedClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		punched := make(chan struct{}, 1)
		side := &directSide{local: netip.MustParseAddrPort("127.0.0.1:1"), timeout: time.Second,
			ns: func(func() error) error {
				punched <- struct{}{}
				return punch.ErrNoPath
			}}
		relay, dp := net.Pipe()
		defer dp.Close()
		p := side.startPunch("127.0.0.1:2", make([]byte, secretLen), nil, 400*time.Microsecond)
		c := new(Dialer).clientMove(p, &rawConn{Conn: relay})
		time.Sleep(100 * time.Microsecond) // the session's first moment, silent
		c.Close()
		<-p.done
		select {
		case <-punched:
			t.Error("the punch began after Close")
		default:
		}
		if err := c.DirectError(); !errors.Is(err, context.Canceled) || !errors.Is(err, errPunchClosed) || errors.Is(err, punch.ErrNoPath) {
			t.Errorf("DirectError: %v; want context.Canceled and %v, not punch.ErrNoPath", err, errPunchClosed)
		}
	})
}

// TestDirectNoEarlyOfferUnasked: a DP sends no early offer to a client
// that asks for a direct path without it (as rtcp's does of a DP it
// found near): its first answer to the Connect is the Ack, which
// brokers the session. An Ack with X 0 first would open that client's
// session, whose bytes would then begin with the real Ack.
func TestDirectNoEarlyOfferUnasked(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, ManualAck: true}, addr, "printer-7")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	p := dialRaw(t, addr)
	p.send(string(plan5.AppendMessage(plan5.AppendMessage(nil,
		&plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, Transport: wireRaw}),
		&plan5.Connect{N: "printer-7", Direct: true})))
	sc, ok := <-accepted
	if !ok {
		t.Fatal("the server accepted no session")
	}
	defer sc.Close()
	if err := sc.(*Conn).Ack(nil); err != nil {
		t.Fatal(err)
	}
	if a, ok := p.read().(*plan5.Aloha); !ok || a.Transport != wireRaw {
		t.Fatalf("first answer %+v, want the DP's Aloha offering the raw leg", a)
	}
	ack, ok := p.read().(*plan5.Ack)
	if !ok || ack.X != 1 || !brokersDirect(ack.Peer, ack.Secret) {
		t.Fatalf("answer to a Connect with Direct and no EarlyPeer: %+v; want the Ack (X 1) with Peer and Secret, no early offer", ack)
	}
}

// TestDirectDialerConcurrent: one Dialer with Direct, dialing two DPs
// from many goroutines at once, keeps what it learns of each DP apart
// and without a race (-race): every session carries its bytes whole,
// whichever mode each dial took.
func TestDirectDialerConcurrent(t *testing.T) {
	var addrs []string
	for range 2 {
		addr := startDP(t, new(DiscoverPoint))
		echo(t, listen(t, &ListenConfig{Transport: TransportYamux, Direct: true}, addr, "printer-7"))
		addrs = append(addrs, addr)
	}
	d := &Dialer{Direct: true}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			c, err := d.DialContext(context.Background(), addrs[i%2], "printer-7")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 8<<10)
			go func() {
				c.Write(msg)
				c.(*Conn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, msg) {
				err = errors.New("the echo differs from what was written")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
