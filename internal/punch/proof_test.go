package punch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// tcpPair is a connected pair of TCP connections on loopback (the proof
// has both sides write at once, which net.Pipe cannot buffer).
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err = l.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func proveBoth(a, b net.Conn, sa, sb []byte) (errA, errB error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Prove(ctx, b, sb) }()
	errA = Prove(ctx, a, sa)
	return errA, <-done
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestProve(t *testing.T) {
	a, b := tcpPair(t)
	errA, errB := proveBoth(a, b, secret, secret)
	if errA != nil || errB != nil {
		t.Fatalf("the same secret: %v, %v", errA, errB)
	}
	// Nothing of the proof is left for the caller to read.
	a.Write([]byte("x"))
	got := make([]byte, 1)
	if _, err := io.ReadFull(b, got); err != nil || got[0] != 'x' {
		t.Fatalf("first byte after the proof: %q, %v", got, err)
	}
}

func TestProveWrongSecret(t *testing.T) {
	a, b := tcpPair(t)
	other := bytes.ToUpper(secret)
	errA, errB := proveBoth(a, b, secret, other)
	for _, err := range []error{errA, errB} {
		if !errors.Is(err, ErrProof) {
			t.Errorf("different secrets: %v, want ErrProof", err)
		}
	}
}

// TestProveReflected: a peer that sends back what it is sent must not
// pass for one that holds the secret.
func TestProveReflected(t *testing.T) {
	a, b := tcpPair(t)
	go io.Copy(b, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Prove(ctx, a, secret); !errors.Is(err, ErrProof) {
		t.Fatalf("a reflecting peer: %v, want ErrProof", err)
	}
	a.Close() // ends the copy
}

// TestProveNotAPeer: something else answers at the address.
func TestProveNotAPeer(t *testing.T) {
	for _, tc := range []struct{ name, sent string }{
		{"http", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"},
		{"version", "rtcp-punch\x02" + string(make([]byte, nonceLen))},
		{"short", "SSH-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			b.Write([]byte(tc.sent))
			b.(*net.TCPConn).CloseWrite()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := Prove(ctx, a, secret); !errors.Is(err, ErrProof) {
				t.Fatalf("%q: %v, want ErrProof", tc.sent, err)
			}
		})
	}
}

// TestProveDeadline: a peer that says nothing holds Prove only until its
// context ends.
func TestProveDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go io.Copy(io.Discard, b) // reads the hello, answers nothing
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := Prove(ctx, a, secret)
		if errors.Is(err, ErrProof) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a silent peer: %v, want the deadline, not ErrProof", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("gave up after %v, want the context's second", d)
		}
		a.Close()
	})
}

func TestProveCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		go io.Copy(io.Discard, b)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- Prove(ctx, a, secret) }()
		synctest.Wait()
		cancel()
		if err := <-errc; errors.Is(err, ErrProof) || !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled: %v, want context.Canceled, not ErrProof", err)
		}
		a.Close()
	})
}

// TestProveCut: a connection that ends (or is reset) before the proof
// says nothing of the other end: Prove says it was cut, and wraps what
// the connection said, not ErrProof.
func TestProveCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset bool
		after int // bytes of a hello the peer sends before it ends
	}{
		{"closed at once", false, 0},
		{"closed in its hello", false, helloLen / 2},
		{"reset at once", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			b.Write(append([]byte(magic), version, 0, 0)[:tc.after])
			if tc.reset {
				b.(*net.TCPConn).SetLinger(0)
			}
			b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := Prove(ctx, a, secret)
			if err == nil || errors.Is(err, ErrProof) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a cut connection: %v; want its I/O error, not ErrProof", err)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("a cut connection: %v; want an end or a reset", err)
			}
		})
	}
}

func TestPunchBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := Punch(ctx, Config{Peer: netip.MustParseAddrPort("10.0.0.1:1"), Secret: []byte("short")}); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
	if _, err := Punch(ctx, Config{Secret: secret}); err == nil {
		t.Error("no peer address was accepted")
	}
}

// script is a peer whose bytes are given: Read returns them, Write
// swallows.
type script struct{ r io.Reader }

func (s script) Read(b []byte) (int, error)  { return s.r.Read(b) }
func (s script) Write(b []byte) (int, error) { return len(b), nil }

// validPeer is what a peer that holds secret sends to a side whose nonce
// is mine: its hello, then its proof.
func validPeer(secret []byte, mine, theirs nonce) []byte {
	b := append([]byte(magic), version)
	b = append(b, theirs[:]...)
	return append(b, mac(secret, theirs, mine)...)
}

// FuzzProve feeds the proof arbitrary bytes from the peer: it must never
// panic, and must succeed exactly when they start with a hello and the
// proof that the secret's holder would send.
func FuzzProve(f *testing.F) {
	var mine, theirs nonce
	mine[0], theirs[0] = 1, 2
	f.Add(validPeer(secret, mine, theirs))
	f.Add(append(validPeer(secret, mine, theirs), "and then the session"...))
	f.Add(validPeer([]byte("another secret, as long as it is"), mine, theirs))
	f.Add(validPeer(secret, mine, mine))
	f.Add([]byte("rtcp-punch\x01"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := prove(script{bytes.NewReader(data)}, secret, mine)
		want := len(data) >= helloLen+proofLen
		if want {
			n, perr := parseHello(data[:helloLen])
			want = perr == nil && n != mine && bytes.Equal(data[helloLen:helloLen+proofLen], mac(secret, n, mine))
		}
		if (err == nil) != want {
			t.Fatalf("prove(%q) = %v, want success %v", data, err, want)
		}
		// Bytes that begin a hello, then the end: cut, not a stranger.
		start := append([]byte(magic), version)
		if len(data) < helloLen && bytes.HasPrefix(start, data[:min(len(data), len(start))]) {
			if !errors.As(err, new(*cutError)) {
				t.Fatalf("prove(%q) = %v, want a cut", data, err)
			}
		}
	})
}

// TestPunchPortTaken: a local port bound without SO_REUSEPORT cannot be
// bound again, and Punch says so at once rather than at its deadline.
func TestPunchPortTaken(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Punch(ctx, Config{
		Local:  l.Addr().(*net.TCPAddr).AddrPort(),
		Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
		Secret: secret,
	})
	if !errors.Is(err, ErrNoPath) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("a taken port: %v, want ErrNoPath and EADDRINUSE", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("gave up only at the deadline, after %v", time.Since(start))
	}
}

// TestPunchRetriesACutProof: a connection that ends before the proof says
// nothing about the peer, so Punch dials again.
func TestPunchRetriesACutProof(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cut, cutPeer := tcpPair(t)
	good, goodPeer := tcpPair(t)
	cutPeer.Close()
	peerDone := make(chan error, 1)
	go func() { peerDone <- Prove(ctx, goodPeer, secret) }()
	attempts := 0
	conn, err := Punch(ctx, Config{
		Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
		Secret: secret,
		Dial: func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error) {
			attempts++
			if attempts == 1 {
				return cut, nil
			}
			return good, nil
		},
	})
	if err != nil {
		t.Fatalf("after a cut proof: %v", err)
	}
	if conn != good || attempts != 2 {
		t.Fatalf("got the connection of attempt %d, want the second's", attempts)
	}
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
}

// TestPunchOnlyCutProofs: a punch whose connections are all cut before
// the proof fails with ErrNoPath at its deadline, and says they were cut,
// wrapping the I/O error: not ErrProof, which would blame a stranger.
func TestPunchOnlyCutProofs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	attempts := 0
	_, err := Punch(ctx, Config{
		Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
		Secret: secret,
		Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
			attempts++
			ours, theirs := tcpPair(t)
			theirs.Close()
			return ours, nil
		},
	})
	if !errors.Is(err, ErrNoPath) || errors.Is(err, ErrProof) || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("only cut connections: %v after %d attempts; want ErrNoPath and the I/O error, not ErrProof", err, attempts)
	}
	if !strings.Contains(err.Error(), "cut before the proof") {
		t.Errorf("only cut connections: %q does not say they were cut", err)
	}
}

// TestPunchRetriesAWrongProof: a connection whose other end proves a
// wrong secret (a stranger, or a stale connect, that reached the port
// first) does not end the punch: it dials again, and takes the peer's
// connection that comes next, as the listener's side does. Only a punch
// that meets nothing else by its deadline fails, with ErrNoPath and
// ErrProof.
func TestPunchRetriesAWrongProof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong int // connects answered with a wrong proof before the peer's; -1: all
	}{
		{"a stranger first", 1},
		{"two strangers first", 2},
		{"only strangers", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tc.wrong < 0 {
				ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
			}
			defer cancel()
			var peers sync.WaitGroup
			defer peers.Wait()
			attempts := 0
			var good net.Conn
			conn, err := Punch(ctx, Config{
				Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
				Secret: secret,
				Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
					attempts++
					ours, theirs := tcpPair(t)
					key := secret
					if tc.wrong < 0 || attempts <= tc.wrong {
						key = bytes.ToUpper(secret) // a stranger's
					} else {
						good = ours
					}
					peers.Go(func() {
						defer theirs.Close()
						Prove(context.Background(), theirs, key) // ends with Punch's reset
					})
					return ours, nil
				},
			})
			if tc.wrong < 0 {
				if !errors.Is(err, ErrNoPath) || !errors.Is(err, ErrProof) {
					t.Fatalf("only strangers answered: %v after %d attempts; want ErrNoPath and ErrProof", err, attempts)
				}
				if attempts < 2 {
					t.Fatalf("%d attempts: a wrong proof ended the punch", attempts)
				}
				return
			}
			if err != nil {
				t.Fatalf("after %d wrong proofs: %v", tc.wrong, err)
			}
			defer conn.Close()
			if conn != good || attempts != tc.wrong+1 {
				t.Fatalf("got the connection of attempt %d, want the peer's, the %dth", attempts, tc.wrong+1)
			}
		})
	}
}

// punchByHand runs Punch under ctx on one connection, whose other end
// the test plays by hand: punchByHand returns that end once it has sent
// its hello (with nonce mine) and read Punch's hello (nonce peer) and
// proof; done gets Punch's error, once it returns.
func punchByHand(t *testing.T, ctx context.Context) (theirs net.Conn, mine, peer nonce, done <-chan error) {
	t.Helper()
	ours, theirs := tcpPair(t)
	punched := make(chan error, 1)
	go func() {
		c, err := Punch(ctx, Config{
			Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
			Secret: secret,
			Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
				return ours, nil
			},
		})
		if c != nil && c != ours {
			err = errors.New("Punch returned another connection")
		}
		punched <- err
	}()
	theirs.SetDeadline(time.Now().Add(time.Minute))
	mine[0] = 7
	hello := append([]byte(magic), version)
	hello = append(hello, mine[:]...)
	if _, err := theirs.Write(hello); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, helloLen+proofLen)
	if _, err := io.ReadFull(theirs, got); err != nil {
		t.Fatal(err)
	}
	peer, err := parseHello(got[:helloLen])
	if err != nil {
		t.Fatal(err)
	}
	return theirs, mine, peer, punched
}

// TestPunchFailedProofResets: when this side gives up inside the proof
// (its deadline), after the other side may already hold both proofs and
// have taken the connection for its session, the connection is reset,
// not closed: the other side reads an error, never a clean end.
func TestPunchFailedProofResets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The other side's own proof it never sends.
	theirs, _, _, done := punchByHand(t, ctx)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Punch succeeded without the other side's proof")
	}
	if n, err := theirs.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("the other side read %d, %v after Punch gave up; want a reset", n, err)
	}
}

// TestPunchProofOutlivesDeadline: a proof under way when Punch's deadline
// passes may finish, within ProofGrace: the other side, which completes
// first, may already have taken the connection.
func TestPunchProofOutlivesDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	theirs, mine, peer, done := punchByHand(t, ctx)
	<-ctx.Done() // Punch's deadline has passed, its proof under way
	if _, err := theirs.Write(mac(secret, mine, peer)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a proof finished %v after the deadline: %v; want it taken", time.Second, err)
	}
}

// TestPunchStoppedSaysSo: a punch whose context is cancelled says it
// was stopped, and why (the cause), not that there is no path: neither
// while it waits to dial again nor inside a proof. One that runs out of
// time says there is no path.
func TestPunchStoppedSaysSo(t *testing.T) {
	errWhy := errors.New("the session closed")
	for _, tc := range []struct {
		name    string
		proof   bool // the connect comes up, and its proof waits
		timeout bool // the deadline ends it, not a cancel
	}{
		{name: "refused, cancelled"},
		{name: "in the proof, cancelled", proof: true},
		{name: "refused, deadline", timeout: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				tctx, tcancel := context.WithTimeout(ctx, time.Second)
				defer tcancel()
				var peers []net.Conn
				defer func() {
					for _, p := range peers {
						p.Close()
					}
				}()
				done := make(chan error, 1)
				go func() {
					c, err := Punch(tctx, Config{
						Peer:   netip.MustParseAddrPort("127.0.0.1:9"),
						Secret: secret,
						Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
							if !tc.proof {
								return nil, syscall.ECONNREFUSED
							}
							a, b := net.Pipe()
							peers = append(peers, b)
							go io.Copy(io.Discard, b) // reads the hello, answers nothing
							return a, nil
						},
					})
					if c != nil {
						c.Close()
					}
					done <- err
				}()
				if !tc.timeout {
					synctest.Wait()
					cancel(errWhy)
				}
				err := <-done
				if tc.timeout {
					if !errors.Is(err, ErrNoPath) || errors.Is(err, context.Canceled) {
						t.Fatalf("out of time: %v; want ErrNoPath", err)
					}
					return
				}
				if !errors.Is(err, context.Canceled) || !errors.Is(err, errWhy) || errors.Is(err, ErrNoPath) || errors.Is(err, ErrProof) {
					t.Fatalf("stopped: %v; want context.Canceled and the cause, not ErrNoPath nor ErrProof", err)
				}
			})
		})
	}
}
