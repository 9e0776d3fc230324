// Package punch makes a direct TCP connection between two peers that may
// each sit behind a NAT: a rendezvous (the DP) has told each the other's
// address as it observed it, and handed both a one-time secret. Both sides
// connect to each other at once from the port they used toward the
// rendezvous (TCP simultaneous open: each side's outgoing SYN opens its own
// NAT for the other's), then prove to each other that they hold the secret
// before a byte is handed to the caller. The wire is in SPEC.md.
//
// It works when the NATs map a local port to the same public port toward
// every destination (endpoint-independent mapping, what Linux masquerade,
// and most home routers, do while the port is free). Behind NATs that pick
// a new port per destination the observed address is useless and Punch
// fails with ErrNoPath at its deadline: the caller then uses the relay.
//
// Between peers with nothing in between that drops what it did not ask
// for (the same host, a LAN, public addresses), each kernel refuses the
// other's SYN unless its own connect is under way at that instant, and
// the simultaneous open rarely meets; so one side may also listen on its
// port while it punches (Config.Accept), and take the other's connect.
package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	// ErrNoPath is returned when no connection came up before the
	// deadline: the NATs on the way do not allow a direct path (or the
	// other side never tried). Use the relay. A punch whose context was
	// cancelled instead returns an error wrapping context.Canceled and
	// the context's cause: it was stopped, and says nothing of the path.
	ErrNoPath = errors.New("punch: no direct path")
	// ErrProof is returned (by Prove; by Punch with ErrNoPath) when a
	// connection came up and the other end answered, but did not prove
	// that it holds the secret; the connection is closed. Punch tries
	// again until its deadline: a stranger may reach the port before the
	// peer. A connection cut before the proof could tell (its end, a
	// reset, a timeout) is not ErrProof: its error wraps the I/O error.
	ErrProof = errors.New("punch: the peer did not prove it holds the secret")
)

// Defaults for the zero values of Config.
const (
	// DefaultTimeout bounds a Punch whose context has no deadline.
	DefaultTimeout = 3 * time.Second
	// DefaultAttempt is how long one connect waits before it is
	// replaced by a fresh one.
	DefaultAttempt = 500 * time.Millisecond
	// firstPause is the wait after the first connect that failed at
	// once (the other side's kernel refused it: its socket was not there
	// yet); each next such wait doubles, up to retryPause.
	firstPause = time.Millisecond
	retryPause = 20 * time.Millisecond
	// MinSecret is the shortest secret Punch accepts.
	MinSecret = 16
)

// Config says whom to punch to and how.
type Config struct {
	// Local is this side's address toward the rendezvous: Punch binds
	// it again (with SO_REUSEADDR and SO_REUSEPORT, which the socket
	// toward the rendezvous must have set too: see Control), so that the
	// NAT maps it to the public port the rendezvous observed.
	Local netip.AddrPort
	// Peer is the other side's address as the rendezvous observed it.
	Peer netip.AddrPort
	// Secret is the one-time secret both sides were given, at least
	// MinSecret bytes.
	Secret []byte
	// Attempt is how long one connect may wait for the other side before
	// a fresh one replaces it; zero means DefaultAttempt.
	Attempt time.Duration
	// Dial makes one connection attempt from laddr to raddr; nil means
	// DialFrom. Tests set it to dial from inside a network namespace.
	Dial func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error)
	// Accept, if true, also listens on Local while Punch dials, and
	// takes the peer's connection if it comes in there: between peers
	// with no NAT or firewall that drops what it did not ask for (the
	// same host, a LAN, public addresses), each kernel refuses the
	// other's SYN unless its own connect is under way at that very
	// moment, so the simultaneous open alone rarely meets. Only
	// connections from Peer are taken (and proven); others are reset.
	// Set it on one side only, on a Local that no other punch uses at
	// the same time (its listener would take the SYNs meant for the
	// other): rtcp sets it on the client, whose port toward the DP is
	// its session's own.
	Accept bool
	// Listen makes the listener of Accept on laddr; nil means
	// ListenFrom. Tests set it to listen inside a network namespace.
	Listen func(ctx context.Context, laddr netip.AddrPort) (net.Listener, error)
	// Listener, with Accept, is a listener on Local made beforehand
	// (ListenFrom), so that the peer's connects are taken from before
	// Punch is called: Punch takes it over, and closes it. Nil: Punch
	// makes its own.
	Listener net.Listener
}

// Punch connects to c.Peer from c.Local, again and again until a
// connection comes up or ctx ends, then proves the secret both ways (see
// Prove). A connection that fails its proof is reset, and Punch dials
// again. It returns the proven connection, or an error wrapping ErrNoPath
// that says what happened (and ErrProof if a connection came up but
// failed its proof; else, if one came up but was cut before the proof,
// that connection's I/O error), or context.Canceled (and the cause) if
// ctx was cancelled; the caller falls back to the relay.
// Without a deadline on ctx, Punch gives up after DefaultTimeout.
func Punch(ctx context.Context, c Config) (net.Conn, error) {
	if c.Listener != nil {
		defer c.Listener.Close()
	}
	if len(c.Secret) < MinSecret {
		return nil, fmt.Errorf("punch: a secret of %d bytes is too short: the rendezvous must hand out at least %d", len(c.Secret), MinSecret)
	}
	if !c.Peer.IsValid() || c.Peer.Port() == 0 {
		return nil, fmt.Errorf("punch: no peer address (%v): the rendezvous must say where the other side is", c.Peer)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	if !c.Accept {
		return dialPeer(ctx, c, nil)
	}
	return dialAndAccept(ctx, c)
}

// dialAndAccept is Punch with Accept: it dials and accepts at once, and
// returns the first connection to the peer that is proven, on either
// way. (Both ways are the one pair of ports, so at most one connection
// to the peer exists at a time; claim makes sure that only one is
// handed on.)
func dialAndAccept(ctx context.Context, c Config) (net.Conn, error) {
	l := c.Listener
	if l == nil {
		listen := c.Listen
		if listen == nil {
			listen = ListenFrom
		}
		var err error
		if l, err = listen(ctx, c.Local); err != nil {
			// No listener: the simultaneous open may still meet.
			return dialPeer(ctx, c, nil)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One Close, which every caller waits for: a net.Listener's Close
	// that comes while another is under way returns at once, before the
	// socket is gone, and the listener would still take connects after
	// Punch has returned.
	var closing atomic.Bool
	closed := make(chan struct{})
	closeL := func() {
		if closing.CompareAndSwap(false, true) {
			l.Close()
			close(closed)
		}
		<-closed
	}
	stop := context.AfterFunc(ctx, closeL)
	defer stop()
	var claimed atomic.Bool
	claim := func() bool { return claimed.CompareAndSwap(false, true) }
	accepted := make(chan net.Conn, 1)
	// taken is full while acceptPeer proves a connection from the peer:
	// the pair of ports is in use, and a connect from it meanwhile fails
	// at once, again and again (a socket, its options, a bind and a
	// connect each time) until the proof has ended; the dials wait.
	taken := make(chan struct{}, 1)
	// A side that has its connection ends the other without the
	// AfterFunc, which would close l on a goroutine of its own: l is
	// closed below, once dialPeer has returned.
	go func() {
		conn := acceptPeer(ctx, l, c, claim, taken)
		if conn != nil {
			stop()
			cancel() // the dials end
		}
		accepted <- conn
	}()
	dc := c
	dial := c.Dial
	if dial == nil {
		dial = DialFrom
	}
	dc.Dial = func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
		select {
		case taken <- struct{}{}:
			<-taken
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return dial(ctx, laddr, raddr)
	}
	conn, err := dialPeer(ctx, dc, claim)
	if conn != nil {
		stop()
		cancel() // the listener ends
	}
	closeL()
	if ac := <-accepted; ac != nil {
		return ac, nil
	}
	return conn, err
}

// acceptPeer takes connections on l until one from c.Peer is proven and
// claimed, or l is closed (ctx ended). It fills taken while it proves
// one, and leaves it full once one is claimed (dialAndAccept).
func acceptPeer(ctx context.Context, l net.Listener, c Config, claim func() bool, taken chan struct{}) net.Conn {
	for {
		conn, err := l.Accept()
		if err != nil {
			return nil
		}
		ap, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
		if netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != c.Peer {
			reset(conn) // not the peer: a port scan, say
			continue
		}
		// A failed proof here never ends the punch: the dials go on
		// until they meet a peer that proves itself, or fail.
		taken <- struct{}{}
		if proveGrace(ctx, conn, c.Secret) == nil && claim() {
			return conn
		}
		<-taken
		reset(conn)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// reset closes conn with a reset, not a FIN: a side that took the
// connection for the session's path must not read its end as the
// session's.
func reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// dialPeer connects to c.Peer from c.Local again and again, and proves
// the secret on the first connection that comes up; claim, if not nil,
// must agree to hand the proven connection on (dialAndAccept).
func dialPeer(ctx context.Context, c Config, claim func() bool) (net.Conn, error) {
	dial := c.Dial
	if dial == nil {
		dial = DialFrom
	}
	attempt := c.Attempt
	if attempt <= 0 {
		attempt = DefaultAttempt
	}
	start := time.Now()
	var last error
	var proofErr error // the last proof that failed
	pause := firstPause
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, attempt)
		conn, err := dial(actx, c.Local, c.Peer)
		early := actx.Err() == nil // it failed before its time
		cancel()
		if err == nil {
			err = proveGrace(ctx, conn, c.Secret)
			if err == nil && (claim == nil || claim()) {
				return conn, nil
			}
			if err == nil {
				// The listener's connection came first (dialAndAccept).
				reset(conn)
				return nil, ctx.Err()
			}
			// Reset, not a FIN: the other side may have completed its
			// proof (it needs only ours, we need its too) and taken the
			// connection for the session's path, where a clean end
			// would read as the session's end.
			reset(conn)
			if serr := stopped(ctx, c, n, start); serr != nil {
				return nil, serr // not the proof's fault
			}
			// A connection cut before the proof (the other side's attempt
			// ended just as it came up), and one whose proof is wrong (a
			// stranger, or a stale connect, that reached the port first),
			// say nothing about the peer: try again, after a pause, until
			// the deadline, as the listener does (acceptPeer).
			if !errors.Is(proofErr, ErrProof) {
				proofErr = err // a wrong proof, once seen, is what the error tells
			}
			early = true // a stranger answering at once must not spin a core
		}
		if errors.Is(err, ErrNoPath) { // Control: not on this system
			return nil, err
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: cannot bind %v again: %w; the connection toward the rendezvous must be made with punch.Control (SO_REUSEADDR and SO_REUSEPORT)", ErrNoPath, c.Local, err)
		}
		if early {
			last = err // failed before its time: keep what the kernel said
		}
		if ctx.Err() != nil {
			if serr := stopped(ctx, c, n, start); serr != nil {
				return nil, serr
			}
			if proofErr != nil {
				what := "was cut before the proof"
				if errors.Is(proofErr, ErrProof) {
					what = "did not prove it was the peer"
				}
				return nil, fmt.Errorf("%w to %v from %v: %d attempts in %v; a connection came up but %s: %w",
					ErrNoPath, c.Peer, c.Local, n, time.Since(start).Round(time.Millisecond), what, proofErr)
			}
			if last == nil {
				last = err
			}
			return nil, fmt.Errorf("%w to %v from %v: %d attempts in %v, the last: %v; the NATs on the way may pick a new port per destination, so use the relay",
				ErrNoPath, c.Peer, c.Local, n, time.Since(start).Round(time.Millisecond), last)
		}
		if early {
			// Refused at once (or a failed proof): a connect again at
			// once would be refused again (and spin a core until the
			// deadline).
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			pause = min(2*pause, retryPause)
		}
	}
}

// stopped is the error of a punch whose ctx was cancelled, not timed
// out, after n connects: the caller, or the other side, gave up on it,
// which says nothing of the path. It wraps ctx's error and its cause.
// Nil if ctx was not cancelled.
func stopped(ctx context.Context, c Config, n int, start time.Time) error {
	err := ctx.Err()
	if !errors.Is(err, context.Canceled) {
		return nil
	}
	how := fmt.Sprintf("punch to %v from %v: stopped after %d attempts in %v", c.Peer, c.Local, n, time.Since(start).Round(time.Millisecond))
	if cause := context.Cause(ctx); cause != err {
		return fmt.Errorf("%s: %w: %w", how, err, cause)
	}
	return fmt.Errorf("%s: %w", how, err)
}

// DialFrom makes one TCP connection attempt from laddr to raddr with
// SO_REUSEADDR and SO_REUSEPORT set (Control), so that laddr may be the
// address of a connection that is still open, the one toward the
// rendezvous. The connection has no TCP keepalive: most connections
// of a punch are closed within a round trip, and the caller of Punch
// sets its own on the one it keeps (rtcp does), which saves the four
// system calls of Go's default on each.
func DialFrom(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(laddr), Control: Control, KeepAlive: -1}
	return d.DialContext(ctx, "tcp", raddr.String())
}

// ListenFrom listens on laddr with SO_REUSEADDR and SO_REUSEPORT set
// (Go sets SO_REUSEADDR on every listener; listenControl adds
// SO_REUSEPORT), beside the connection toward the rendezvous that has
// the same address (Config.Accept). The connections it accepts have no
// TCP keepalive, as DialFrom's.
func ListenFrom(ctx context.Context, laddr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: listenControl, KeepAlive: -1}
	network := "tcp4"
	if laddr.Addr().Is6() {
		network = "tcp6"
	}
	return lc.Listen(ctx, network, laddr.String())
}

// ProofGrace is how long a proof under way may outlast Punch's deadline.
// The proof is one round trip, and the two sides do not end it at once:
// the other side completes as soon as it has read our proof, we only once
// we have read its. Cut at our deadline, a proof the other side has
// already completed leaves it alone on the connection (a reset tells it,
// but its session fails); let it finish instead. Cancelling ctx still
// ends it at once.
const ProofGrace = time.Second

// proveGrace is Prove under ctx's cancellation, but past ctx's deadline by
// up to ProofGrace.
func proveGrace(ctx context.Context, conn net.Conn, secret []byte) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ProofGrace+time.Until(deadlineOf(ctx)))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	defer stop()
	return Prove(pctx, conn, secret)
}

// deadlineOf is ctx's deadline, or now if it has none (Punch always sets
// one).
func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now()
}
