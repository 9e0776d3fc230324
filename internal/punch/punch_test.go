package punch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
	"rtcp/internal/natlab"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A peer is one side of a punch: where its sockets are made.
type peer struct {
	host   *natlab.Host // nil: this process's own namespace, on loopback
	local  netip.Addr   // the address it binds
	accept bool         // it punches with Config.Accept
}

func loopbackPeer() peer { return peer{local: netip.MustParseAddr("127.0.0.1")} }

func labPeer(h *natlab.Host) peer { return peer{host: h, local: h.Addr} }

func (p peer) dial(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	if p.host == nil {
		return DialFrom(ctx, laddr, raddr)
	}
	var c net.Conn
	err := p.host.Do(func() (err error) {
		c, err = DialFrom(ctx, laddr, raddr)
		return err
	})
	return c, err
}

// listenFrom is the Config.Listen of the peer's punches.
func (p peer) listenFrom(ctx context.Context, laddr netip.AddrPort) (net.Listener, error) {
	if p.host == nil {
		return ListenFrom(ctx, laddr)
	}
	var l net.Listener
	err := p.host.Do(func() (err error) {
		l, err = ListenFrom(ctx, laddr)
		return err
	})
	return l, err
}

func (p peer) listen(t testing.TB) net.Listener {
	t.Helper()
	var l net.Listener
	listen := func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(p.local, 0).String())
		return err
	}
	var err error
	if p.host == nil {
		err = listen()
	} else {
		err = p.host.Do(listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// outcome is one side's result of a punch.
type outcome struct {
	conn     net.Conn
	err      error
	took     time.Duration // from the rendezvous's answer to a proven connection
	attempts int
}

// punchPair meets a and b at the rendezvous at rv and punches from both at
// once, each with timeout.
func punchPair(t testing.TB, a, b peer, rv netip.AddrPort, key string, timeout time.Duration) [2]outcome {
	t.Helper()
	var out [2]outcome
	done := make(chan struct{}, 2)
	for i, p := range []peer{a, b} {
		go func() {
			defer func() { done <- struct{}{} }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m, err := meet(ctx, p.dial, rv, p.local, key)
			if err != nil {
				out[i].err = err
				return
			}
			defer m.conn.Close()
			start := time.Now()
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i].conn, out[i].err = Punch(ctx, Config{
				Local:  m.local,
				Peer:   m.peer,
				Secret: m.secret,
				Accept: p.accept,
				Listen: p.listenFrom,
				Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
					out[i].attempts++
					return p.dial(ctx, laddr, raddr)
				},
			})
			out[i].took = time.Since(start)
		}()
	}
	<-done
	<-done
	for _, o := range out {
		if o.conn != nil {
			t.Cleanup(func() { o.conn.Close() })
		}
	}
	return out
}

// exchange checks that bytes flow both ways on a punched pair.
func exchange(t testing.TB, a, b net.Conn) {
	t.Helper()
	for _, c := range [][2]net.Conn{{a, b}, {b, a}} {
		msg := []byte("hello over the direct path from " + c[0].LocalAddr().String())
		if _, err := c[0].Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c[1], got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("read %q, want %q", got, msg)
		}
	}
}

// rtt is the median of a few one-byte echoes over a and b.
func rtt(t testing.TB, a, b net.Conn) time.Duration {
	t.Helper()
	var d []time.Duration
	buf := make([]byte, 1)
	for range 21 {
		start := time.Now()
		if _, err := a.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(a, buf); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// TestPunchLoopback punches on loopback, where nothing drops a SYN that
// no connect waits for: the kernel refuses it, so a simultaneous open
// meets only if both connects are under way at the same instant (it
// took from under a millisecond to more than a second, when it came up
// at all). With Accept on one side, the other's connect is taken by its
// listener: every punch must come up, quickly.
func TestPunchLoopback(t *testing.T) {
	l := loopbackPeer().listen(t)
	startRendezvous(t, l)
	rv := l.Addr().(*net.TCPAddr).AddrPort()
	accepting := loopbackPeer()
	accepting.accept = true
	var took []time.Duration
	for i := range 20 {
		a, b := accepting, loopbackPeer()
		if i%2 == 1 {
			a, b = b, a // either side may come to the rendezvous first
		}
		out := punchPair(t, a, b, rv, fmt.Sprint("loopback-", i), time.Second)
		for side, o := range out {
			if o.err != nil {
				t.Fatalf("run %d, side %d: %v", i, side, o.err)
			}
			took = append(took, o.took)
		}
		exchange(t, out[0].conn, out[1].conn)
		out[0].conn.Close()
		out[1].conn.Close()
	}
	slices.Sort(took)
	t.Logf("20/20 punches direct; time to a proven connection p50 %v, max %v", took[len(took)/2], took[len(took)-1])
}

// TestPunchAcceptOthers: a connection to an accepting punch's port from
// anyone but the peer is reset, and one from the peer's address that
// fails the proof does not end the punch either: the peer's own still
// comes up.
func TestPunchAcceptOthers(t *testing.T) {
	peerL := loopbackPeer().listen(t) // reserves the peer's port
	peerAddr := peerL.Addr().(*net.TCPAddr).AddrPort()
	peerL.Close()
	// The accepting side's connection to the rendezvous, which holds
	// its port.
	rv := loopbackPeer().listen(t)
	defer rv.Close()
	toRV, err := DialFrom(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), rv.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer toRV.Close()
	localAddr := toRV.LocalAddr().(*net.TCPAddr).AddrPort()
	secret := make([]byte, 32)
	rand.Read(secret)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	listening := make(chan struct{})
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := Punch(ctx, Config{Local: localAddr, Peer: peerAddr, Secret: secret, Accept: true,
			Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
				<-ctx.Done() // only the listener's way here
				return nil, ctx.Err()
			},
			Listen: func(ctx context.Context, laddr netip.AddrPort) (net.Listener, error) {
				l, err := ListenFrom(ctx, laddr)
				close(listening)
				return l, err
			}})
		done <- result{conn, err}
	}()
	<-listening
	// A stranger: another port.
	stranger, err := DialFrom(ctx, netip.MustParseAddrPort("127.0.0.1:0"), localAddr)
	if err == nil { // else reset already, before the connect returned
		if _, err := stranger.Read(make([]byte, 1)); err == nil {
			t.Fatal("a stranger's connection to an accepting punch read bytes")
		}
		stranger.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a stranger's connect: %v, want a reset", err)
	}
	// The peer's address, with the wrong secret.
	bad, err := DialFrom(ctx, peerAddr, localAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := Prove(ctx, bad, make([]byte, 32)); err == nil {
		t.Fatal("a wrong secret was proven")
	}
	bad.(*net.TCPConn).SetLinger(0) // no TIME_WAIT on the pair of ports the peer dials from next
	bad.Close()
	// The peer.
	good, err := DialFrom(ctx, peerAddr, localAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := Prove(ctx, good, secret); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.conn.Close()
	exchange(t, good, r.conn)
}

// TestPunchListenerBefore: with a Listener made before Punch is called,
// a peer's connect that came before it is taken, not refused.
func TestPunchListenerBefore(t *testing.T) {
	rv := loopbackPeer().listen(t)
	defer rv.Close()
	toRV, err := DialFrom(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), rv.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer toRV.Close()
	localAddr := toRV.LocalAddr().(*net.TCPAddr).AddrPort()
	l, err := ListenFrom(context.Background(), localAddr)
	if err != nil {
		t.Fatal(err)
	}
	peerL := loopbackPeer().listen(t) // reserves the peer's port
	peerAddr := peerL.Addr().(*net.TCPAddr).AddrPort()
	peerL.Close()
	secret := make([]byte, 32)
	rand.Read(secret)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The peer's connect, before Punch: the listener's backlog holds it.
	peer, err := DialFrom(ctx, peerAddr, localAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	proved := make(chan error, 1)
	go func() { proved <- Prove(ctx, peer, secret) }()

	conn, err := Punch(ctx, Config{Local: localAddr, Peer: peerAddr, Secret: secret, Accept: true, Listener: l,
		Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
			<-ctx.Done() // only the listener's way here
			return nil, ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := <-proved; err != nil {
		t.Fatal(err)
	}
	exchange(t, peer, conn)
	if _, err := l.Accept(); err == nil {
		t.Error("the listener is still open after Punch")
	}
}

// TestPunchRefusedPauses: a connect refused at once is tried again after
// a pause, not at once: a punch toward a port where nothing listens must
// not spin a core until its deadline.
func TestPunchRefusedPauses(t *testing.T) {
	peerL := loopbackPeer().listen(t)
	peerAddr := peerL.Addr().(*net.TCPAddr).AddrPort()
	peerL.Close()
	const timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	attempts := 0
	_, err := Punch(ctx, Config{Local: netip.MustParseAddrPort("127.0.0.1:0"), Peer: peerAddr, Secret: make([]byte, 32),
		Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
			attempts++
			return DialFrom(ctx, laddr, raddr)
		}})
	if !errors.Is(err, ErrNoPath) {
		t.Fatalf("%v, want ErrNoPath", err)
	}
	// Pauses of 1, 2, 4, 8 and 16 ms, then 20 ms: about 14 in 200 ms
	// (it was thousands).
	if max := int(timeout/retryPause) + 10; attempts > max {
		t.Errorf("%d attempts in %v, want at most %d", attempts, timeout, max)
	}
}

// lab is a public network with a rendezvous on its router.
type lab struct {
	*natlab.Lab
	rv netip.AddrPort
}

func newLab(t testing.TB) lab {
	nl := natlab.New(t)
	var l net.Listener
	err := nl.Router().Do(func() (err error) {
		l, err = net.Listen("tcp4", ":0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	startRendezvous(t, l)
	return lab{nl, netip.AddrPortFrom(natlab.RouterAddr, l.Addr().(*net.TCPAddr).AddrPort().Port())}
}

// punchRuns is how many punches TestPunchEndpointIndependent makes.
const punchRuns = 50

// TestPunchEndpointIndependent punches between two hosts each behind its
// own endpoint-independent NAT, punchRuns times: every one must succeed.
func TestPunchEndpointIndependent(t *testing.T) {
	lab := newLab(t)
	a := labPeer(lab.AddHost(natlab.EndpointIndependent))
	a.accept = true // as rtcp's client does: it changes nothing behind a NAT
	b := labPeer(lab.AddHost(natlab.EndpointIndependent))
	var took []time.Duration
	var rtts []time.Duration
	firstTry := 0
	for i := range punchRuns {
		out := punchPair(t, a, b, lab.rv, "eim", 5*time.Second)
		for side, o := range out {
			if o.err != nil {
				t.Fatalf("run %d, side %d: %v", i, side, o.err)
			}
			took = append(took, o.took)
			if o.attempts == 1 {
				firstTry++
			}
		}
		if got, want := out[0].conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(), b.host.PublicAddr; got != want {
			t.Fatalf("side 0 is connected to %v, want the other NAT %v", got, want)
		}
		exchange(t, out[0].conn, out[1].conn)
		rtts = append(rtts, rtt(t, out[0].conn, out[1].conn))
		out[0].conn.Close()
		out[1].conn.Close()
	}
	slices.Sort(took)
	slices.Sort(rtts)
	r := rtts[len(rtts)/2]
	p50, max := took[len(took)/2], took[len(took)-1]
	base := plainDial(t, a, b.host)
	t.Logf("%d/%d punches direct, %d of %d sides on the first attempt; time to a proven direct connection p50 %v (%.1f round trips of %v; a plain dial through a port forward and one echo, the same two steps: %v), max %v",
		punchRuns, punchRuns, firstTry, len(took), p50, float64(p50)/float64(r), r, base, max)
}

// plainDial is the median time of a TCP dial from a to a listener on to
// through a port forward on its NAT, and one echo on the connection: what
// a punch does (a connection, then one round trip of proof) without the
// punch, to set its time against.
func plainDial(t *testing.T, a peer, to *natlab.Host) time.Duration {
	l := labPeer(to).listen(t)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).AddrPort().Port()
	to.Forward(t, port)
	var d []time.Duration
	buf := make([]byte, 1)
	for range 21 {
		start := time.Now()
		c, err := a.dial(context.Background(), netip.AddrPortFrom(a.local, 0), netip.AddrPortFrom(to.PublicAddr, port))
		if err != nil {
			t.Fatal(err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Write(buf)
		io.ReadFull(s, buf)
		s.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
		c.Close()
		s.Close()
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// TestPunchOnePublic punches between a public host and one behind an
// endpoint-independent NAT, each side starting the meeting first in turn.
func TestPunchOnePublic(t *testing.T) {
	lab := newLab(t)
	pub := labPeer(lab.AddHost(natlab.Public))
	nat := labPeer(lab.AddHost(natlab.EndpointIndependent))
	for i := range 10 {
		a, b := pub, nat
		if i%2 == 1 {
			a, b = nat, pub
		}
		a.accept = i%4 < 2 // the public side, then the other, accepts; or neither
		out := punchPair(t, a, b, lab.rv, "one-public", 5*time.Second)
		for side, o := range out {
			if o.err != nil {
				t.Fatalf("run %d, side %d: %v", i, side, o.err)
			}
		}
		exchange(t, out[0].conn, out[1].conn)
		out[0].conn.Close()
		out[1].conn.Close()
	}
}

// TestPunchRandomPorts punches between two hosts behind NATs that pick a
// new port per destination: both sides must give up with ErrNoPath by
// their deadline, so that the caller can use the relay.
func TestPunchRandomPorts(t *testing.T) {
	lab := newLab(t)
	a := labPeer(lab.AddHost(natlab.RandomPorts))
	a.accept = true // no SYN of the other's comes through its NAT either
	b := labPeer(lab.AddHost(natlab.RandomPorts))
	const timeout = time.Second
	out := punchPair(t, a, b, lab.rv, "random", timeout)
	for side, o := range out {
		if o.conn != nil {
			t.Fatalf("side %d: a direct connection through random-port NATs (to %v)", side, o.conn.RemoteAddr())
		}
		if !errors.Is(o.err, ErrNoPath) {
			t.Fatalf("side %d: %v, want ErrNoPath", side, o.err)
		}
		// The deadline, and the last attempt's end at most a scheduler's
		// while after it.
		if o.took > timeout+500*time.Millisecond {
			t.Errorf("side %d gave up after %v, want about its deadline %v", side, o.took, timeout)
		}
		t.Logf("side %d after %v: %v", side, o.took, o.err)
	}
}

// BenchmarkStream moves bytes one way between two hosts behind
// endpoint-independent NATs: over a punched connection (direct), and over
// a plain TCP connection between the same two hosts through a port forward
// on the receiver's NAT (raw), side by side.
func BenchmarkStream(b *testing.B) {
	lab := newLab(b)
	x := labPeer(lab.AddHost(natlab.EndpointIndependent))
	yh := lab.AddHost(natlab.EndpointIndependent)
	y := labPeer(yh)

	out := punchPair(b, x, y, lab.rv, "bench", 5*time.Second)
	for _, o := range out {
		if o.err != nil {
			b.Fatal(o.err)
		}
	}

	l := y.listen(b)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).AddrPort().Port()
	yh.Forward(b, port)
	c, err := x.dial(context.Background(), netip.AddrPortFrom(x.local, 0), netip.AddrPortFrom(yh.PublicAddr, port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	drain(b, out[1].conn)
	drain(b, s)
	b.Run("direct", func(b *testing.B) { stream(b, out[0].conn) })
	b.Run("raw", func(b *testing.B) { stream(b, c) })
}

// stream writes 64 KiB at a time to w for the benchmark, while drain
// reads them from the other end.
func stream(b *testing.B, w net.Conn) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// drain reads r until it ends, and until then holds the benchmark's end.
func drain(b *testing.B, r net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(done)
	}()
	b.Cleanup(func() {
		r.Close()
		<-done
	})
}

// openFDs is how many descriptors this process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(fds)
}

// TestPunchListenerClosed: the listener of Accept, given or made by
// Punch, is closed on every way out of Punch, and nothing else is left
// open: afterwards a connect to the port is refused, and the process has
// the descriptors it had before.
func TestPunchListenerClosed(t *testing.T) {
	rv := loopbackPeer().listen(t)
	defer rv.Close()
	peerL := loopbackPeer().listen(t) // reserves the peer's port; nothing answers there
	peerAddr := peerL.Addr().(*net.TCPAddr).AddrPort()
	peerL.Close()
	secret := make([]byte, 32)
	rand.Read(secret)
	for _, tc := range []struct {
		name   string
		given  bool // a Listener made beforehand
		secret []byte
		peer   bool // a connection from the peer's address that never proves
		cancel bool // ctx cancelled, not timed out
	}{
		{name: "short secret", given: true, secret: secret[:4]},
		{name: "deadline", secret: secret},
		{name: "deadline/given", given: true, secret: secret},
		{name: "cancelled", given: true, secret: secret, cancel: true},
		{name: "silent peer, cancelled", secret: secret, peer: true, cancel: true},
		{name: "silent peer, deadline", given: true, secret: secret, peer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toRV, err := DialFrom(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), rv.Addr().(*net.TCPAddr).AddrPort())
			if err != nil {
				t.Fatal(err)
			}
			defer toRV.Close()
			local := toRV.LocalAddr().(*net.TCPAddr).AddrPort()
			before := openFDs(t)
			cfg := Config{Local: local, Peer: peerAddr, Secret: tc.secret, Accept: true, Attempt: 20 * time.Millisecond}
			listening := make(chan struct{})
			if tc.given {
				if cfg.Listener, err = ListenFrom(context.Background(), local); err != nil {
					t.Fatal(err)
				}
				close(listening)
			} else {
				cfg.Listen = func(ctx context.Context, laddr netip.AddrPort) (net.Listener, error) {
					defer close(listening)
					return ListenFrom(ctx, laddr)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if tc.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
			}
			done := make(chan error, 1)
			go func() {
				c, err := Punch(ctx, cfg)
				if c != nil {
					c.Close()
				}
				done <- err
			}()
			var silent net.Conn
			if tc.peer && len(tc.secret) >= MinSecret {
				<-listening
				// The peer's address, connected, saying nothing: its
				// proof waits until ctx ends (cancelled: at once; timed
				// out: ProofGrace later).
				if silent, err = DialFrom(context.Background(), peerAddr, local); err != nil {
					t.Fatal(err)
				}
			}
			if tc.cancel {
				cancel()
			}
			if err := <-done; err == nil {
				t.Fatal("Punch succeeded with no peer")
			}
			if silent != nil {
				silent.Close()
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after Punch, %d before", after, before)
			}
			if c, err := net.Dial("tcp", local.String()); err == nil {
				c.Close()
				t.Fatalf("a connect to %v after Punch was taken: its listener is still open", local)
			}
		})
	}
}

// slowCloseListener is a listener whose first Close takes until release
// is closed, and whose later ones return at once with an error, as a
// net.Listener's Close does while another is under way.
type slowCloseListener struct {
	conns   chan net.Conn
	first   atomic.Bool
	closing chan struct{} // closed when the first Close begins
	release chan struct{} // the first Close returns once it is closed
	done    atomic.Bool   // the first Close has returned
}

func (l *slowCloseListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closing:
		return nil, net.ErrClosed
	}
}

func (l *slowCloseListener) Close() error {
	if !l.first.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	close(l.closing)
	<-l.release
	l.done.Store(true)
	return nil
}

func (l *slowCloseListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// fromConn is a connection that says it comes from remote.
type fromConn struct {
	net.Conn
	remote netip.AddrPort
}

func (c fromConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// TestPunchWaitsForListenerClose: Punch returns only once its listener
// is closed when the listener's side has the connection: the accept side
// stops the AfterFunc before it ends the dials, so dialAndAccept's Close
// is the only one, and Punch waits for it. (Two Closes at once, a
// net.Listener's second returning at once while the listener still takes
// connects: TestPunchWaitsForListenerCloseWhenStopped.)
func TestPunchWaitsForListenerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		peerAddr := netip.MustParseAddrPort("127.0.0.1:9")
		ours, theirs := net.Pipe()
		defer theirs.Close()
		l := &slowCloseListener{conns: make(chan net.Conn, 1), closing: make(chan struct{}), release: make(chan struct{})}
		l.conns <- fromConn{ours, peerAddr}
		go func() { // the peer, proving itself on the listener's connection
			got := make([]byte, helloLen)
			if _, err := io.ReadFull(theirs, got); err != nil {
				return
			}
			theirNonce, _ := parseHello(got)
			var mine nonce
			mine[0] = 7
			theirs.Write(append(append([]byte(magic), version), mine[:]...))
			if _, err := io.ReadFull(theirs, make([]byte, proofLen)); err != nil {
				return
			}
			theirs.Write(mac(secret, mine, theirNonce))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		type result struct {
			conn   net.Conn
			err    error
			closed bool // the listener's Close had returned
		}
		done := make(chan result, 1)
		go func() {
			c, err := Punch(ctx, Config{Local: netip.MustParseAddrPort("127.0.0.1:1"), Peer: peerAddr, Secret: secret, Accept: true, Listener: l,
				Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
					<-ctx.Done() // only the listener's way here
					return nil, ctx.Err()
				}})
			done <- result{c, err, l.done.Load()}
		}()
		synctest.Wait() // the connection proven, the listener's Close under way
		select {
		case r := <-done:
			t.Errorf("Punch returned (%v) while its listener's Close was under way", r.err)
			done <- r
		default:
		}
		close(l.release)
		r := <-done
		if fc, ok := r.conn.(fromConn); r.err != nil || !ok || fc.Conn != ours {
			t.Fatalf("Punch: %v, %v; want the listener's connection", r.conn, r.err)
		}
		if !r.closed {
			t.Fatal("Punch returned before its listener was closed")
		}
		ours.Close()
	})
}

// TestPunchWaitsForListenerCloseWhenStopped: when the punch's context
// ends (a cancel here; a deadline is the same), the AfterFunc begins the
// listener's Close on a goroutine of its own, and dialAndAccept's Close
// comes while it is under way: Punch still returns only once the
// listener is closed. (TestPunchWaitsForListenerClose covers the
// listener's side winning, whose Close is dialAndAccept's alone.)
func TestPunchWaitsForListenerCloseWhenStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &slowCloseListener{conns: make(chan net.Conn), closing: make(chan struct{}), release: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type result struct {
			err    error
			closed bool // the listener's Close had returned
		}
		done := make(chan result, 1)
		go func() {
			c, err := Punch(ctx, Config{Local: netip.MustParseAddrPort("127.0.0.1:1"), Peer: netip.MustParseAddrPort("127.0.0.1:9"), Secret: secret, Accept: true, Listener: l,
				Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
					<-ctx.Done()
					<-l.closing // the AfterFunc's Close is the first
					return nil, ctx.Err()
				}})
			if c != nil {
				c.Close()
			}
			done <- result{err, l.done.Load()}
		}()
		synctest.Wait() // dialling and accepting
		cancel()
		synctest.Wait() // the AfterFunc's Close under way
		select {
		case r := <-done:
			t.Errorf("Punch returned (%v) while its listener's Close was under way", r.err)
			done <- r
		default:
		}
		close(l.release)
		r := <-done
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("Punch: %v; want context.Canceled", r.err)
		}
		if !r.closed {
			t.Fatal("Punch returned before its listener was closed")
		}
	})
}
