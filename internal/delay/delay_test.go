package delay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveTCP runs handle for each connection to a loopback listener until
// the test ends.
func serveTCP(t testing.TB, handle func(*net.TCPConn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flowtest.ServeEach(t, l, func(c net.Conn) { handle(c.(*net.TCPConn)) })
	return l.Addr().String()
}

// startRelay runs r on a loopback listener until the test ends.
func startRelay(t testing.TB, r *Relay) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve(l) }()
	t.Cleanup(func() {
		r.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve after Close: %v, want net.ErrClosed", err)
		}
	})
	return l.Addr().String()
}

func dialTCP(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// echo echoes until EOF, then half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// TestEchoTakesRTT: a 1-byte round trip through the relay takes at least
// its RTT, the first (which includes the dial onward) as well as the next.
func TestEchoTakesRTT(t *testing.T) {
	const rtt = 20 * time.Millisecond
	addr := startRelay(t, &Relay{To: serveTCP(t, echo), RTT: rtt})
	start := time.Now()
	c := dialTCP(t, addr)
	var b [1]byte
	for i := range 3 {
		t0 := time.Now()
		if i == 0 {
			t0 = start
		}
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
			t.Fatalf("echo %d: %q, %v", i, b[0], err)
		}
		if d := time.Since(t0); d < rtt {
			t.Errorf("echo %d took %v through a relay of RTT %v", i, d, rtt)
		}
	}
}

// TestHeader: Header's bytes reach To first, then the relayed ones, at
// either RTT, and Header is given the accepted connection.
func TestHeader(t *testing.T) {
	for _, rtt := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			got := make(chan []byte, 1)
			server := serveTCP(t, func(c *net.TCPConn) {
				b, _ := io.ReadAll(c)
				got <- b
			})
			var client string
			c := dialTCP(t, startRelay(t, &Relay{To: server, RTT: rtt, Header: func(a net.Conn) []byte {
				return []byte("from " + a.RemoteAddr().String() + "\n")
			}}))
			client = c.LocalAddr().String()
			if _, err := c.Write([]byte("data")); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			if b, want := <-got, "from "+client+"\ndata"; string(b) != want {
				t.Errorf("To read %q, want %q", b, want)
			}
		})
	}
}

// TestHalfClose: a half-close crosses after the bytes before it, and the
// other direction carries on; then both ends see EOF.
func TestHalfClose(t *testing.T) {
	for _, rtt := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			msg := bytes.Repeat([]byte("half-close "), 100_000)
			got := make(chan []byte, 1)
			server := serveTCP(t, func(c *net.TCPConn) {
				b, err := io.ReadAll(c)
				if err != nil {
					t.Errorf("server read: %v", err)
				}
				got <- b
				c.Write([]byte("bye"))
				c.CloseWrite()
				io.ReadAll(c) // until the relay closes
			})
			c := dialTCP(t, startRelay(t, &Relay{To: server, RTT: rtt}))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "bye" {
				t.Fatalf("client read %q, %v; want \"bye\" and EOF", reply, err)
			}
			if b := <-got; !bytes.Equal(b, msg) {
				t.Fatalf("server read %d bytes before EOF, want %d", len(b), len(msg))
			}
		})
	}
}

// TestReset: a reset crosses as a reset, and so does a dial that fails.
func TestReset(t *testing.T) {
	reset := serveTCP(t, func(c *net.TCPConn) {
		var b [1]byte
		io.ReadFull(c, b[:])
		c.SetLinger(0)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	for _, to := range []struct{ name, addr string }{{"peer reset", reset}, {"dial refused", refused}} {
		for _, rtt := range []time.Duration{0, 10 * time.Millisecond} {
			t.Run(to.name+"/"+rtt.String(), func(t *testing.T) {
				// The reset may come before the client's connect returns.
				c, err := net.Dial("tcp", startRelay(t, &Relay{To: to.addr, RTT: rtt}))
				if err == nil {
					defer c.Close()
					c.SetDeadline(time.Now().Add(20 * time.Second))
					// A reset that came before this write fails it, and
					// the read after it sees a clean EOF: the kernel
					// reports a socket's error once.
					if _, err = c.Write([]byte{1}); err == nil {
						_, err = io.ReadAll(c)
					}
				}
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("read after the far end reset: %v, want a reset", err)
				}
			})
		}
	}
}

// sendAll writes blocks of block to c until n bytes, then half-closes;
// it returns the SHA-256 of what it sent.
func sendAll(c *net.TCPConn, block []byte, n int) ([]byte, error) {
	h := sha256.New()
	for sent := 0; sent < n; {
		b := block[:min(len(block), n-sent)]
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		h.Write(b)
		sent += len(b)
	}
	return h.Sum(nil), c.CloseWrite()
}

// sink returns a handler that hashes all it reads after start is closed,
// and sends the hash and the count on got.
func sink(start <-chan struct{}, got chan<- []byte) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		c.SetReadBuffer(smallBuffer) // the kernel, not only the relay, could hold a lot
		<-start
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			got <- nil
			return
		}
		got <- h.Sum(nil)
	}
}

// randomBlock is random bytes of a length that is no power of two, so
// that chunks out of order do not hash the same.
func randomBlock(t testing.TB) []byte {
	b := make([]byte, 1<<20+9)
	rand.Read(b)
	return b
}

// smallBuffers is a listener whose connections get small socket
// buffers, so that the kernel holds little of what crosses them.
type smallBuffers struct{ net.Listener }

const smallBuffer = 64 << 10 // Linux doubles it for its bookkeeping

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetReadBuffer(smallBuffer)
		c.(*net.TCPConn).SetWriteBuffer(smallBuffer)
	}
	return c, err
}

// TestHoldsMoreThanAWindow: with a receiver that reads nothing yet, a
// sender gets 16 MiB through the link, far more than a small fixed window
// lets through (4 MiB, yamux's, is 40 MB/s at a 100 ms round trip). Every
// socket on the way has small buffers (the kernel holds at most 1 MiB of
// it), so the relay's queue held at least 15 MiB at once. The bytes then
// arrive intact.
func TestHoldsMoreThanAWindow(t *testing.T) {
	const n = 16 << 20
	start, got := make(chan struct{}), make(chan []byte, 1)
	var d net.Dialer
	r := &Relay{
		To:  serveTCP(t, sink(start, got)),
		RTT: 2 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.(*net.TCPConn).SetReadBuffer(smallBuffer)
				c.(*net.TCPConn).SetWriteBuffer(smallBuffer)
			}
			return c, err
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve(smallBuffers{l}) }()
	defer func() {
		r.Close()
		<-done
	}()
	c := dialTCP(t, l.Addr().String())
	c.SetWriteBuffer(smallBuffer)
	sum, err := sendAll(c, randomBlock(t), n)
	close(start)
	if err != nil {
		t.Fatalf("sending %d MiB while the receiver waits: %v", n>>20, err)
	}
	if h := <-got; !bytes.Equal(h, sum) {
		t.Fatal("the bytes arrived changed")
	}
	if p := r.peak.get(); p < 15<<20 {
		t.Errorf("the link held at most %d KiB at once, want at least 15 MiB", p>>10)
	}
}

// TestMaxQueue: the queue stops reading at MaxQueue (past it by one read
// at most) and the bytes still all arrive.
func TestMaxQueue(t *testing.T) {
	const n, max = 16 << 20, 1 << 20
	start, got := make(chan struct{}), make(chan []byte, 1)
	r := &Relay{To: serveTCP(t, sink(start, got)), RTT: 2 * time.Millisecond, MaxQueue: max}
	c := dialTCP(t, startRelay(t, r))
	close(start)
	sum, err := sendAll(c, randomBlock(t), n)
	if err != nil {
		t.Fatal(err)
	}
	if h := <-got; !bytes.Equal(h, sum) {
		t.Fatal("the bytes arrived changed")
	}
	if p := r.peak.get(); p > max+readSize {
		t.Errorf("the link held %d KiB at once, want at most MaxQueue (%d KiB) and a read", p>>10, max>>10)
	}
}

// dialMem returns a client's end of a new connection to l.
func dialMem(t *testing.T, l *memnet.Listener) net.Conn {
	a, err := l.DialContext(t.Context(), "tcp", "")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// memServer returns a Dial that connects to handle over net.Pipe; the
// handler's goroutines end when the relay closes its end.
func memServer(handle func(net.Conn)) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			handle(b)
		}()
		return a, nil
	}
}

// startMem runs r on a memnet.Listener inside the bubble (its writers
// wait on the bubble's timers: no clock for connections not TCP).
func startMem(t *testing.T, r *Relay) *memnet.Listener {
	l := memnet.New("")
	done := make(chan error, 1)
	go func() { done <- r.Serve(l) }()
	t.Cleanup(func() {
		r.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve after Close: %v, want net.ErrClosed", err)
		}
	})
	return l
}

// TestNoBandwidthCap: in real time, 32 MiB cross a link of 1 s in no
// more than RTT/2 beyond four times what they take through the plain
// relay (RTT 0) in the same test, or 2 s if that is more: a link that
// waited for each chunk in turn (one read of 256 KiB per RTT/2 is
// 0.5 MB/s, a minute) or kept a window of 4 MiB per round trip (8 s)
// would take far longer. At 20 ms, as it was, a link that waited for
// each chunk in turn passed (a mutation: 1.3-1.5 s, under the 2 s).
func TestNoBandwidthCap(t *testing.T) {
	const n, rtt = 32 << 20, time.Second
	block := randomBlock(t)
	took := func(rtt time.Duration) time.Duration {
		done := make(chan time.Time, 1)
		server := serveTCP(t, func(c *net.TCPConn) {
			io.Copy(io.Discard, c)
			done <- time.Now()
		})
		c := dialTCP(t, startRelay(t, &Relay{To: server, RTT: rtt}))
		t0 := time.Now()
		if _, err := sendAll(c, block, n); err != nil {
			t.Fatal(err)
		}
		return (<-done).Sub(t0)
	}
	plain := took(0)
	delayed := took(rtt)
	t.Logf("%d MiB: %v through the plain relay, %v through a link of %v", n>>20, plain, delayed, rtt)
	if limit := rtt/2 + max(4*plain, 2*time.Second); delayed > limit {
		t.Errorf("%d MiB took %v through a link of %v, over %v (%v through the plain relay): the link limits bandwidth",
			n>>20, delayed, rtt, limit, plain)
	}
}

// TestFakeTime runs the relay in a synctest bubble, where only the
// relay's timers make time pass: an echo takes exactly the RTT, and
// 16 MiB cross in exactly RTT/2, as if the link had no bandwidth limit.
func TestFakeTime(t *testing.T) {
	const rtt = 20 * time.Millisecond
	t.Run("echo", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := &Relay{RTT: rtt, Dial: memServer(func(c net.Conn) { io.Copy(c, c) })}
			c := dialMem(t, startMem(t, r))
			var b [1]byte
			for i := range 3 {
				t0 := time.Now()
				c.Write([]byte{byte(i)})
				if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
					t.Fatalf("echo %d: %q, %v", i, b[0], err)
				}
				if d := time.Since(t0); d != rtt {
					t.Errorf("echo %d took %v, want the RTT, %v", i, d, rtt)
				}
			}
		})
	})
	t.Run("bulk", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const n = 16 << 20
			got := make(chan int, 1)
			var last time.Time
			r := &Relay{RTT: rtt, Dial: memServer(func(c net.Conn) {
				buf := make([]byte, 1<<20)
				total := 0
				for total < n {
					m, err := c.Read(buf)
					total += m
					if err != nil {
						break
					}
				}
				last = time.Now()
				got <- total
			})}
			c := dialMem(t, startMem(t, r))
			t0 := time.Now()
			block := make([]byte, 1<<20)
			for range n / len(block) {
				if _, err := c.Write(block); err != nil {
					t.Fatal(err)
				}
			}
			if m := <-got; m != n {
				t.Fatalf("received %d bytes, want %d", m, n)
			}
			if d := last.Sub(t0); d != rtt/2 {
				t.Errorf("%d MiB took %v one way, want RTT/2, %v: the link limits bandwidth", n>>20, d, rtt/2)
			}
		})
	})
}

// TestFakeTimeGone: a far end that answers and is gone at once (a
// server that writes and closes) still has its answer reach the client,
// and its end, one RTT after the connect, though the relay's write of
// what the client sent meanwhile fails RTT/2 before (the answer and the
// end had crossed first, as they would on a link). The client writes
// at once, or RTT/4 later.
func TestFakeTimeGone(t *testing.T) {
	const rtt = 20 * time.Millisecond
	for _, wait := range []time.Duration{0, rtt / 4} {
		t.Run(wait.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := startMem(t, &Relay{RTT: rtt, Dial: memServer(func(c net.Conn) {
					c.Write([]byte("bye"))
				})})
				t0 := time.Now()
				c := dialMem(t, l)
				time.Sleep(wait)
				c.Write([]byte{1})
				b, err := io.ReadAll(c)
				if string(b) != "bye" {
					t.Errorf("the client read %q, %v; want \"bye\"", b, err)
				}
				if d := time.Since(t0); d != rtt {
					t.Errorf("the client's read ended %v after the connect, want the RTT, %v", d, rtt)
				}
			})
		})
	}
}

// TestFakeTimeConnect: on the bubble's clock a connect and the first
// byte back take exactly the RTT, however the far side answers: an echo
// of the client's first byte, one through a dial that takes RTT/4 (the
// dial runs while the byte crosses), a greeting written at its accept,
// or a dial that fails (a reset, as the SYN's answer).
func TestFakeTimeConnect(t *testing.T) {
	const rtt = 20 * time.Millisecond
	for _, tc := range []struct {
		name  string
		dial  func(context.Context, string, string) (net.Conn, error)
		write bool // the client writes a byte first
		fails bool // the client's read fails
	}{
		{"echo", memServer(func(c net.Conn) { io.Copy(c, c) }), true, false},
		{"slow dial", func(ctx context.Context, network, addr string) (net.Conn, error) {
			time.Sleep(rtt / 4)
			return memServer(func(c net.Conn) { io.Copy(c, c) })(ctx, network, addr)
		}, true, false},
		{"greeting", memServer(func(c net.Conn) {
			c.Write([]byte{7})
			io.Copy(io.Discard, c)
		}), false, false},
		{"refused", func(context.Context, string, string) (net.Conn, error) {
			return nil, syscall.ECONNREFUSED
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := startMem(t, &Relay{RTT: rtt, Dial: tc.dial})
				t0 := time.Now()
				c := dialMem(t, l)
				b := make([]byte, 1)
				if tc.write {
					c.Write(b)
				}
				_, err := io.ReadFull(c, b)
				if (err != nil) != tc.fails {
					t.Errorf("read: %v, want failed %v", err, tc.fails)
				}
				if d := time.Since(t0); d != rtt {
					t.Errorf("the connect and the first byte (or the reset) back took %v, want the RTT, %v", d, rtt)
				}
			})
		})
	}
}

// TestClose: Close ends every link at once, one whose dial onward is
// still under way and one holding bytes, and returns when their
// goroutines have ended (synctest.Test fails if one is left), with no
// time passed.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = time.Hour
		dialed := make(chan struct{}, 1)
		serve := memServer(func(c net.Conn) {
			dialed <- struct{}{}
			io.Copy(io.Discard, c)
		})
		var dials atomic.Int32
		r := &Relay{RTT: rtt, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				return serve(ctx, network, addr)
			}
			<-ctx.Done() // a dial that takes its time
			return nil, ctx.Err()
		}}
		l := startMem(t, r)

		held := dialMem(t, l)
		<-dialed
		held.Write([]byte("held for RTT/2"))
		dialing := dialMem(t, l)
		dialing.Write([]byte("held until the dial"))
		synctest.Wait() // both readers have queued their bytes

		t1 := time.Now()
		r.Close()
		if d := time.Since(t1); d != 0 {
			t.Errorf("Close took %v of fake time, want none", d)
		}
		for _, c := range []net.Conn{held, dialing} {
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("a client's read after Close succeeded")
			}
		}
	})
}

// BenchmarkRelay moves bytes through the relay on one connection: at a
// round trip it should keep up with the plain relay (RTT 0), whose
// io.Copy Linux splices.
func BenchmarkRelay(b *testing.B) {
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("rtt="+rtt.String(), func(b *testing.B) {
			got := make(chan int64, 1)
			server := serveTCP(b, func(c *net.TCPConn) {
				n, _ := io.Copy(io.Discard, c)
				got <- n
			})
			c := dialTCP(b, startRelay(b, &Relay{To: server, RTT: rtt}))
			c.SetDeadline(time.Time{})
			block := make([]byte, 1<<20)
			b.SetBytes(int64(len(block)))
			for b.Loop() {
				if _, err := c.Write(block); err != nil {
					b.Fatal(err)
				}
			}
			c.CloseWrite()
			if n := <-got; n != int64(b.N)*int64(len(block)) {
				b.Fatalf("%d bytes arrived, want %d", n, b.N*len(block))
			}
		})
	}
}

// TestRoundTripTime times, in real time, what the relay adds at 2 ms and
// 20 ms: a connect and the server's first byte back, and a byte there
// and back after it, should each take one RTT more than through the
// plain relay (RTT 0). None may take less than the RTT. Each is timed
// through both relays in turn, 21 times a round, and the quickest
// through the link may exceed the quickest through the plain relay by
// the RTT and RTT/8 + 0.5 ms: the relay's own wakeups and the race
// detector. The quickest, not the median, and up to five rounds until
// it holds: a shared machine's load makes wakeups late, the link's
// twice as many as the plain relay's, and only ever later (with -race,
// the mux tests running beside at load 5-18, the median of the
// differences at 2 ms exceeded the RTT by up to 2.5 ms, failing 4 runs
// of 20 at the RTT/4 + 1 ms it was allowed; the quickest of a round by
// 0.1-0.3 ms, and once by 1.3 ms). TestFakeTimeConnect and TestClock
// are the finer tests of the rule and of the clock.
func TestRoundTripTime(t *testing.T) {
	server := serveTCP(t, echo)
	plain := startRelay(t, &Relay{To: server})
	for _, rtt := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			delayed := startRelay(t, &Relay{To: server, RTT: rtt})
			// measure returns how long a connect and first byte took, and a
			// byte there and back after it.
			measure := func(addr string) (first, again time.Duration) {
				b := make([]byte, 1)
				t0 := time.Now()
				c := dialTCP(t, addr)
				defer c.Close()
				for _, took := range []*time.Duration{&first, &again} {
					if _, err := c.Write(b); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, b); err != nil {
						t.Fatal(err)
					}
					*took = time.Since(t0)
					t0 = time.Now()
				}
				return first, again
			}
			const n, rounds = 21, 5
			slack := rtt/8 + time.Millisecond/2
			var first, again, plainFirst, plainAgain []time.Duration
			for round := 1; ; round++ {
				for range n {
					pf, pa := measure(plain)
					df, da := measure(delayed)
					first, again = append(first, df), append(again, da)
					plainFirst, plainAgain = append(plainFirst, pf), append(plainAgain, pa)
				}
				late := false
				for _, m := range []struct {
					what        string
					took, plain []time.Duration
				}{{"a connect and first byte", first, plainFirst}, {"a byte there and back", again, plainAgain}} {
					slices.Sort(m.took)
					slices.Sort(m.plain)
					extra := m.took[0] - m.plain[0]
					t.Logf("round %d, %s: min %v, median %v (%.2f RTT); the quickest %v more than through the plain relay",
						round, m.what, m.took[0], m.took[len(m.took)/2], float64(m.took[len(m.took)/2])/float64(rtt), extra)
					if m.took[0] < rtt {
						t.Fatalf("%s took %v, under the RTT (%v)", m.what, m.took[0], rtt)
					}
					if extra <= rtt+slack {
						continue
					}
					late = true
					if round == rounds {
						t.Errorf("%s took at least %v, %v more than through the plain relay (the quickest of %d), over the RTT (%v) by more than %v",
							m.what, m.took[0], extra, len(m.took), rtt, slack)
					}
				}
				if !late || round == rounds {
					return
				}
			}
		})
	}
}

// TestClock: a writer's clock wakes it on time where a Go timer would
// not (on an idle runtime a wait of 300 µs takes 1 ms, 700 µs late):
// never early, and the median of 40 waits at most 400 µs late, which
// holds on a loaded machine (30-110 µs at load 10-14), in one of up to
// five rounds: with the package's bulk tests running beside it under
// -race, a round's median passed 400 µs in 7 of 600 (up to 350 µs in
// others); a clock late by 700 µs fails every round.
func TestClock(t *testing.T) {
	c, err := newClock()
	if err != nil {
		t.Skipf("no clock: %v", err)
	}
	defer c.close()
	const n, d, rounds = 40, 300 * time.Microsecond, 5
	late := make([]time.Duration, n)
	for round := 1; ; round++ {
		for i := range late {
			at := time.Now().Add(d)
			if err := c.sleep(time.Until(at)); err != nil {
				t.Fatal(err)
			}
			late[i] = time.Since(at)
		}
		slices.Sort(late)
		t.Logf("round %d, late: min %v, median %v, max %v", round, late[0], late[n/2], late[n-1])
		if late[0] < 0 {
			t.Fatalf("a wait ended %v early", -late[0])
		}
		if late[n/2] <= 400*time.Microsecond {
			return
		}
		if round == rounds {
			t.Fatalf("the median wait of %v ended %v late in each of %d rounds (the last), want at most 400µs",
				d, late[n/2], rounds)
		}
	}
}
