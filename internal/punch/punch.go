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
package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

var (
	// ErrNoPath is returned when no connection came up before the
	// deadline: the NATs on the way do not allow a direct path (or the
	// other side never tried). Use the relay.
	ErrNoPath = errors.New("punch: no direct path")
	// ErrProof is returned when a connection came up but the other end
	// did not prove that it holds the secret; the connection is closed.
	ErrProof = errors.New("punch: the peer did not prove it holds the secret")
)

// Defaults for the zero values of Config.
const (
	// DefaultTimeout bounds a Punch whose context has no deadline.
	DefaultTimeout = 3 * time.Second
	// DefaultAttempt is how long one connect waits before it is
	// replaced by a fresh one.
	DefaultAttempt = 500 * time.Millisecond
	// retryPause is the wait after a connect that failed at once (the
	// other side's kernel reset it: its socket was not there yet).
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
}

// Punch connects to c.Peer from c.Local, again and again until a
// connection comes up or ctx ends, then proves the secret both ways (see
// Prove). It returns the proven connection, or an error wrapping ErrNoPath
// or ErrProof that says what happened; the caller falls back to the relay.
// Without a deadline on ctx, Punch gives up after DefaultTimeout.
func Punch(ctx context.Context, c Config) (net.Conn, error) {
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
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, attempt)
		conn, err := dial(actx, c.Local, c.Peer)
		cancel()
		if err == nil {
			err = proveGrace(ctx, conn, c.Secret)
			if err == nil {
				return conn, nil
			}
			// Reset, not a FIN: the other side may have completed its
			// proof (it needs only ours, we need its too) and taken the
			// connection for the session's path, where a clean end
			// would read as the session's end.
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
			// A connection cut before the proof (the other side's attempt
			// ended just as it came up) says nothing about the peer: try
			// again. A wrong proof ends the punch.
			var cut *cutError
			if !errors.As(err, &cut) || ctx.Err() != nil {
				return nil, err
			}
		}
		if errors.Is(err, ErrNoPath) { // Control: not on this system
			return nil, err
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: cannot bind %v again: %w; the connection toward the rendezvous must be made with punch.Control (SO_REUSEADDR and SO_REUSEPORT)", ErrNoPath, c.Local, err)
		}
		if actx.Err() == nil {
			last = err // failed before its time: keep what the kernel said
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return nil, fmt.Errorf("%w to %v from %v: %d attempts in %v, the last: %v; the NATs on the way may pick a new port per destination, so use the relay",
				ErrNoPath, c.Peer, c.Local, n, time.Since(start).Round(time.Millisecond), last)
		}
		if actx.Err() == nil {
			t := time.NewTimer(retryPause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// DialFrom makes one TCP connection attempt from laddr to raddr with
// SO_REUSEADDR and SO_REUSEPORT set (Control), so that laddr may be the
// address of a connection that is still open, the one toward the
// rendezvous.
func DialFrom(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(laddr), Control: Control}
	return d.DialContext(ctx, "tcp", raddr.String())
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
