package rtcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/protocol/plan5"
)

// Faults, bounds and load over real loopback TCP. (Tests where time
// matters run under synctest: keepalive_test.go.)

// logEvents is a slog.Handler that passes each message on to whoever
// waits for it, so a test can wait for "link up" instead of sleeping.
type logEvents struct {
	mu   sync.Mutex // guards got, last, ch
	got  map[string]int
	last map[string]time.Time // when each message was logged last
	ch   chan struct{}        // closed and replaced on each message
}

func newLogEvents() (*logEvents, *slog.Logger) {
	e := &logEvents{got: make(map[string]int), last: make(map[string]time.Time), ch: make(chan struct{})}
	return e, slog.New(e)
}

func (e *logEvents) Enabled(context.Context, slog.Level) bool { return true }
func (e *logEvents) WithAttrs([]slog.Attr) slog.Handler       { return e }
func (e *logEvents) WithGroup(string) slog.Handler            { return e }
func (e *logEvents) Handle(_ context.Context, r slog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got[r.Message]++
	e.last[r.Message] = r.Time
	close(e.ch)
	e.ch = make(chan struct{})
	return nil
}

// wait waits until msg has been logged n times in all.
func (e *logEvents) wait(t *testing.T, msg string, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second) // only a hang ends here
	for {
		e.mu.Lock()
		got, ch := e.got[msg], e.ch
		e.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("waited 20 s for log message %q (%d of %d)", msg, got, n)
		}
	}
}

// at returns when msg was logged last.
func (e *logEvents) at(msg string) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last[msg]
}

const (
	logLinkUp   = "rtcp: server link up"
	logLinkDown = "rtcp: server link down"
)

// TestHelperDP is not a test: TestDPKilled runs the test binary as a DP in
// a process of its own, so that it can kill it.
func TestHelperDP(t *testing.T) {
	if os.Getenv("RTCP_TEST_HELPER_DP") == "" {
		t.Skip("the DP process of TestDPKilled")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(l.Addr())
	new(DiscoverPoint).Serve(l)
}

// startDPProcess runs a DP in a process of its own; kill kills it as
// SIGKILL does, with no chance to say goodbye.
func startDPProcess(t *testing.T) (addr string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDP$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RTCP_TEST_HELPER_DP=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the DP process said %q: %v", line, err)
	}
	return strings.TrimSpace(line), kill
}

// echoCut serves one session of l as an echo and reports the error that
// ended it (nil only for a clean end) and when.
func echoCut(l net.Listener) <-chan error {
	ch := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					ch <- werr
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				ch <- err
				return
			}
		}
	}()
	return ch
}

// streamUntilCut writes to c and reads the echo until c fails; it closes
// moving once some data has gone round, and reports the read error.
func streamUntilCut(c net.Conn, moving chan<- struct{}) <-chan error {
	go func() {
		buf := make([]byte, 16<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	ch := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		total := 0
		for {
			n, err := c.Read(buf)
			total += n
			if total >= 256<<10 && moving != nil {
				close(moving)
				moving = nil
			}
			if err != nil {
				ch <- err
				return
			}
		}
	}()
	return ch
}

// TestDPKilled kills the DP's process in the middle of a transfer: both
// ends of the session fail, with an error and not io.EOF, within 2 s.
func TestDPKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process per transport")
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			addr, kill := startDPProcess(t)
			l := listen(t, &ListenConfig{Transport: m.server}, addr, "victim")
			server := echoCut(l)
			c, err := (&Dialer{Transport: m.client}).DialContext(context.Background(), addr, "victim")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			moving := make(chan struct{})
			client := streamUntilCut(c, moving)
			<-moving
			kill()
			killed := time.Now()
			for _, end := range []struct {
				who string
				ch  <-chan error
			}{{"client", client}, {"server", server}} {
				select {
				case err := <-end.ch:
					if err == nil || errors.Is(err, io.EOF) {
						t.Errorf("%s: the session ended cleanly (%v) when the DP was killed; want an error", end.who, err)
					}
					t.Logf("%s: %v after the kill: %v", end.who, time.Since(killed).Round(time.Millisecond), err)
				case <-time.After(2*time.Second - time.Since(killed)):
					t.Fatalf("%s: the session still runs 2 s after the DP was killed", end.who)
				}
			}
		})
	}
}

// TestServerKilled cuts every connection of a server at once, as its
// process dying does: the client's session fails with an error within 2 s.
func TestServerKilled(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			addr := startDP(t, nil)
			var mu sync.Mutex
			var conns []net.Conn
			lc := &ListenConfig{Transport: m.server, MinBackoff: time.Hour,
				Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
					c, err := new(net.Dialer).DialContext(ctx, network, a)
					if err == nil {
						mu.Lock()
						conns = append(conns, c)
						mu.Unlock()
					}
					return c, err
				}}
			l := listen(t, lc, addr, "victim")
			server := echoCut(l)
			c, err := (&Dialer{Transport: m.client}).DialContext(context.Background(), addr, "victim")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			moving := make(chan struct{})
			client := streamUntilCut(c, moving)
			<-moving
			mu.Lock()
			for _, c := range conns {
				c.(*net.TCPConn).SetLinger(0) // a process that dies with unread input resets
				c.Close()
			}
			mu.Unlock()
			killed := time.Now()
			select {
			case err := <-client:
				if errors.Is(err, io.EOF) {
					t.Errorf("the client's session ended with io.EOF when the server died; want an error")
				}
				t.Logf("client: %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
			case <-time.After(2 * time.Second):
				t.Fatal("the client's session still runs 2 s after the server died")
			}
			<-server
		})
	}
}

// blackholeProxy forwards TCP connections to addr until told to drop
// everything: then it goes on reading, and forwards nothing.
type blackholeProxy struct {
	l          net.Listener
	to         string
	drop       atomic.Bool
	start      time.Time
	lastToAddr atomic.Int64 // when it last began a write toward addr, since start
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      []net.Conn
}

func newBlackholeProxy(t *testing.T, to string) *blackholeProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{l: l, to: to, start: time.Now()}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *blackholeProxy) serve() {
	defer p.wg.Done()
	for {
		a, err := p.l.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.to)
		if err != nil {
			a.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, a, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(a, b, &p.lastToAddr)
		go p.pipe(b, a, nil)
	}
}

func (p *blackholeProxy) pipe(src, dst net.Conn, last *atomic.Int64) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.drop.Load() {
			if last != nil {
				last.Store(int64(time.Since(p.start)))
			}
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *blackholeProxy) close() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestKeepAliveBlackhole: a server's path to the DP starts dropping
// everything; both the server and the DP notice, by their keepalive, on
// real TCP, for each server transport. The DP gives the link up twice its
// keepalive period after the last byte it got, not sooner; how much later
// is the machine's scheduling, so the bound here only says that it was
// the keepalive (TCP would take minutes): the exact timing, in virtual
// time, is TestKeepAliveSilentServerLink's.
func TestKeepAliveBlackhole(t *testing.T) {
	const period = 200 * time.Millisecond
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		t.Run(tr.String(), func(t *testing.T) {
			events, logger := newLogEvents()
			addr := startDP(t, &DiscoverPoint{KeepAlive: period, Logger: logger})
			proxy := newBlackholeProxy(t, addr)
			lc := &ListenConfig{Transport: tr, KeepAlive: period, MinBackoff: time.Hour}
			l := listen(t, lc, proxy.l.Addr().String(), "quiet")
			server := echoCut(l)
			c, err := Dial(addr, "quiet")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			exchangeTCP(t, c, "ping")
			proxy.drop.Store(true)
			cut := time.Now()
			// The server's session fails when the server notices; the
			// client's when the DP does.
			select {
			case err := <-server:
				if err == nil {
					t.Fatal("the server's session ended cleanly")
				}
				t.Logf("server noticed after %v: %v", time.Since(cut).Round(time.Millisecond), err)
			case <-time.After(10 * period):
				t.Fatal("the server did not notice a dead path")
			}
			events.wait(t, logLinkDown, 1)
			down := events.at(logLinkDown)
			d := down.Sub(cut)
			// The IdleReader's deadline is always 15/16 of the timeout
			// or more ahead of a read that began after the bytes came.
			silent := down.Sub(proxy.start.Add(time.Duration(proxy.lastToAddr.Load())))
			t.Logf("DP noticed after %v, %v after the last byte it got", d.Round(time.Millisecond), silent.Round(time.Millisecond))
			if silent < 2*period*15/16 {
				t.Errorf("the DP gave the link up %v after the last byte it got, want its idle timeout, %v", silent, 2*period)
			}
			if d > 10*period {
				t.Errorf("the DP noticed after %v, want its keepalive to notice (about %v)", d, 2*period)
			}
		})
	}
}

// exchangeTCP sends msg on c to an echo server and checks the echo.
func exchangeTCP(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v; want %q", buf, err, msg)
	}
}

// acceptWatch is a listener that fails the test on any Accept error
// before it is closed.
type acceptWatch struct {
	net.Listener
	errs   atomic.Int32
	closed atomic.Bool
}

func (a *acceptWatch) Accept() (net.Conn, error) {
	c, err := a.Listener.Accept()
	if err != nil && !a.closed.Load() {
		a.errs.Add(1)
	}
	return c, err
}

func (a *acceptWatch) Close() error {
	a.closed.Store(true)
	return a.Listener.Close()
}

// TestDPRestart restarts the DP on the same address under an http.Server:
// the listener dials again and registers again, Accept never fails, and
// Serve keeps running.
func TestDPRestart(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			events, logger := newLogEvents()
			l1, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l1.Addr().String()
			dp1 := &DiscoverPoint{Logger: logger}
			go dp1.Serve(l1)
			defer dp1.Close()

			lc := ListenConfig{Transport: tr, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
			rl, err := lc.Listen(context.Background(), addr, "web")
			if err != nil {
				t.Fatal(err)
			}
			aw := &acceptWatch{Listener: rl}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "hello from behind NAT")
			})}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(aw) }()
			client := &http.Client{Transport: &http.Transport{
				DisableKeepAlives: true,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return DialContext(ctx, addr, "web")
				}}}
			get := func() {
				t.Helper()
				resp, err := client.Get("http://web/")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if string(body) != "hello from behind NAT" {
					t.Fatalf("GET: %q", body)
				}
			}
			get()

			dp1.Close()
			l2, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen again on %s: %v", addr, err)
			}
			dp2 := &DiscoverPoint{Logger: logger}
			go dp2.Serve(l2)
			defer dp2.Close()
			events.wait(t, logLinkUp, 2) // once at each DP
			get()

			select {
			case err := <-served:
				t.Fatalf("http.Server.Serve returned across the restart: %v", err)
			default:
			}
			if n := aw.errs.Load(); n != 0 {
				t.Fatalf("Accept failed %d times across the restart", n)
			}
			srv.Close()
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve = %v", err)
			}
		})
	}
}

// TestOpenCloseFlood opens and closes sessions as fast as clients can,
// many abandoned in the middle of their handshake; afterwards the server
// still serves, and every session the DP saw has ended (Shutdown proves
// it by returning nil).
func TestOpenCloseFlood(t *testing.T) {
	for _, m := range modes[:3] {
		t.Run(m.name, func(t *testing.T) {
			dp := new(DiscoverPoint)
			addr := startDP(t, dp)
			l := listen(t, &ListenConfig{Transport: m.server, PoolSize: 2}, addr, "flood")
			echo(t, l)
			d := &Dialer{Transport: m.client}
			var wg sync.WaitGroup
			var opened atomic.Int32
			clients := 200
			if raceEnabled {
				clients = 50
			}
			for i := range clients {
				wg.Go(func() {
					for j := range 5 {
						ctx := context.Background()
						var cancel context.CancelFunc = func() {}
						if (i+j)%3 == 0 {
							// Give up somewhere in the handshake.
							ctx, cancel = context.WithTimeout(ctx, time.Duration(j*100)*time.Microsecond)
						}
						c, err := d.DialContext(ctx, addr, "flood")
						cancel()
						if err != nil {
							continue
						}
						opened.Add(1)
						if j%2 == 0 {
							c.Write([]byte("x"))
						}
						c.Close()
					}
				})
			}
			wg.Wait()
			t.Logf("%d sessions opened and closed", opened.Load())
			c, err := d.DialContext(context.Background(), addr, "flood")
			if err != nil {
				t.Fatal(err)
			}
			exchangeTCP(t, c, "still serving")
			c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := dp.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v: sessions outlived the flood (%+v)", err, dp.Stats())
			}
		})
	}
}

// TestManySessions runs 1000 sessions at once, each an echo of its own
// random bytes checked with SHA-256.
func TestManySessions(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 sessions")
	}
	for _, m := range []struct {
		name           string
		server, client Transport
	}{{"json/json", TransportJSON, TransportJSON}, {"yamux/raw", TransportYamux, TransportYamux}} {
		t.Run(m.name, func(t *testing.T) {
			sessions, size := 1000, 8<<10
			if raceEnabled {
				sessions = 100 // the full 1000 take a minute under -race
			}
			// A thousand busy sessions in one process under -race can
			// starve a goroutine for longer than a keepalive period: this
			// test is about the data, so keepalive is off.
			dp := &DiscoverPoint{KeepAlive: -1}
			addr := startDP(t, dp)
			l := listen(t, &ListenConfig{Transport: m.server, PoolSize: 4}, addr, "many")
			echo(t, l)
			d := &Dialer{Transport: m.client}
			var dialed, done sync.WaitGroup
			start := make(chan struct{})
			var failed atomic.Int32
			dialed.Add(sessions)
			done.Add(sessions)
			for range sessions {
				go func() {
					defer done.Done()
					c, err := d.DialContext(context.Background(), addr, "many")
					dialed.Done()
					if err != nil {
						t.Errorf("dial: %v", err)
						failed.Add(1)
						return
					}
					defer c.Close()
					<-start
					msg := make([]byte, size)
					rand.Read(msg)
					go func() {
						c.Write(msg)
						c.(*Conn).CloseWrite()
					}()
					h := sha256.New()
					if _, err := io.Copy(h, c); err != nil {
						t.Errorf("read: %v", err)
						failed.Add(1)
						return
					}
					if want := sha256.Sum256(msg); !bytes.Equal(h.Sum(nil), want[:]) {
						t.Errorf("the echo of %d bytes differs from what was sent", size)
						failed.Add(1)
					}
				}()
			}
			t0 := time.Now()
			dialed.Wait()
			t.Logf("%d sessions open after %v", sessions, time.Since(t0))
			if st := dp.Stats(); st.Sessions != sessions {
				t.Errorf("%d sessions open at the DP, want %d at once", st.Sessions, sessions)
			}
			t1 := time.Now()
			close(start)
			done.Wait()
			t.Logf("%d sessions done after %v", sessions, time.Since(t1))
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d of %d sessions failed", n, sessions)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dp.Shutdown(ctx)
			st := dp.Stats()
			if want := uint64(sessions) * uint64(size); st.BytesToServers != want || st.BytesToClients != want {
				t.Errorf("Stats counted %d bytes to servers and %d to clients, want %d each", st.BytesToServers, st.BytesToClients, want)
			}
		})
	}
}

// TestLimits: each bound refuses only the peer that reaches it, with a
// reason that names it, and counts the refusal.
func TestLimits(t *testing.T) {
	t.Run("MaxNames", func(t *testing.T) {
		dp := &DiscoverPoint{MaxNames: 2}
		addr := startDP(t, dp)
		echo(t, listen(t, nil, addr, "a"))
		echo(t, listen(t, nil, addr, "b"))
		_, err := Listen(addr, "c")
		wantRefused(t, err, "MaxNames")
		c, err := Dial(addr, "a")
		if err != nil {
			t.Fatal(err)
		}
		exchangeTCP(t, c, "a still works")
		c.Close()
		if n := dp.Stats().Refused["max_names"]; n != 1 {
			t.Errorf("Refused[max_names] = %d, want 1", n)
		}
	})
	t.Run("MaxLinksPerOwner", func(t *testing.T) {
		dp := &DiscoverPoint{MaxLinksPerOwner: 2}
		addr := startDP(t, dp)
		events, logger := newLogEvents()
		dp.Logger = logger
		echo(t, listen(t, &ListenConfig{Owner: "one", PoolSize: 2}, addr, "a"))
		events.wait(t, logLinkUp, 2)
		_, err := (&ListenConfig{Owner: "one"}).Listen(context.Background(), addr, "b")
		wantRefused(t, err, "MaxLinksPerOwner")
		echo(t, listen(t, &ListenConfig{Owner: "two"}, addr, "c"))
		if n := dp.Stats().Refused["max_links_per_owner"]; n != 1 {
			t.Errorf("Refused[max_links_per_owner] = %d, want 1", n)
		}
	})
	t.Run("MaxSessionsPerServer", func(t *testing.T) {
		dp := &DiscoverPoint{MaxSessionsPerServer: 2}
		addr := startDP(t, dp)
		echo(t, listen(t, nil, addr, "a"))
		echo(t, listen(t, nil, addr, "b"))
		for range 2 {
			c, err := Dial(addr, "a")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		_, err := Dial(addr, "a")
		wantRefused(t, err, "MaxSessionsPerServer")
		c, err := Dial(addr, "b")
		if err != nil {
			t.Fatalf("another server's client was refused: %v", err)
		}
		exchangeTCP(t, c, "b is not limited by a")
		c.Close()
		if n := dp.Stats().Refused["max_sessions_per_server"]; n != 1 {
			t.Errorf("Refused[max_sessions_per_server] = %d, want 1", n)
		}
	})
	t.Run("MaxPendingConnects", func(t *testing.T) {
		dp := &DiscoverPoint{MaxPendingConnects: 1}
		addr := startDP(t, dp)
		// A plain server that never answers a Connect.
		s, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Write(plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "mute"}))
		r := plan5.NewReader(s, 0)
		if _, err := r.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		first := make(chan error, 1)
		go func() {
			c, err := Dial(addr, "mute")
			if err == nil {
				c.Close()
			}
			first <- err
		}()
		if m, err := r.ReadMessage(); err != nil || m.Type() != plan5.TypeConnect {
			t.Fatalf("the server got %v, %v; want the first Connect", m, err)
		}
		_, err = Dial(addr, "mute")
		wantRefused(t, err, "MaxPendingConnects")
		s.Close() // the first client's open fails with the server
		if err := <-first; err == nil {
			t.Fatal("a session opened on a server that never answered")
		}
		if n := dp.Stats().Refused["max_pending_connects"]; n != 1 {
			t.Errorf("Refused[max_pending_connects] = %d, want 1", n)
		}
	})
}

func wantRefused(t *testing.T, err error, bound string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, bound) {
		t.Fatalf("err = %v; want a refusal that names %s", err, bound)
	}
}

// TestStatsCounts: servers, links, sessions and bytes each way.
func TestStatsCounts(t *testing.T) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	l := listen(t, &ListenConfig{PoolSize: 3}, addr, "counted")
	events, logger := newLogEvents()
	_ = events
	_ = logger
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Write(make([]byte, 50000))
		c.Close()
	})
	c, err := Dial(addr, "counted")
	if err != nil {
		t.Fatal(err)
	}
	c.Write(make([]byte, 100000))
	c.(*Conn).CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	wg.Wait()
	if _, err := Dial(addr, "nobody"); err == nil {
		t.Fatal("a session to nobody")
	}
	st := dp.Stats()
	if st.Servers != 1 || st.Links < 1 {
		t.Errorf("Stats = %+v; want 1 server", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dp.Shutdown(ctx)
	st = dp.Stats()
	if st.BytesToServers != 100000 || st.BytesToClients != 50000 || st.SessionsTotal != 1 {
		t.Errorf("Stats = %+v; want 100000 bytes to servers, 50000 to clients, 1 session", st)
	}
	if st.Refused["no_server"] != 1 {
		t.Errorf("Refused[no_server] = %d, want 1", st.Refused["no_server"])
	}
	if len(st.Refused) != len(RefusalReasons) {
		t.Errorf("Stats.Refused has %d keys, want one per reason (%d)", len(st.Refused), len(RefusalReasons))
	}
}

// TestListenerCloseKeepsSessions is TestListenerCloseLeavesSessions on
// real TCP for each server transport: Close leaves the accepted session
// running, and the link ends with it.
func TestListenerCloseKeepsSessions(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		t.Run(tr.String(), func(t *testing.T) {
			events, logger := newLogEvents()
			dp := &DiscoverPoint{Logger: logger}
			addr := startDP(t, dp)
			l, err := (&ListenConfig{Transport: tr}).Listen(context.Background(), addr, "closing")
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			c, err := Dial(addr, "closing")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := <-accepted
			l.Close()
			go io.Copy(sc, sc)
			exchangeTCP(t, c, "after Close")
			if _, err := Dial(addr, "closing"); err == nil {
				t.Fatal("a closed listener took a new session")
			}
			if n := dp.Stats().Links; n != 1 {
				t.Fatalf("%d links while the accepted session runs, want 1", n)
			}
			sc.Close()
			events.wait(t, logLinkDown, 1)
		})
	}
}

// ownGoroutines returns the stacks of the goroutines that run rtcp's own
// code (package rtcp or its internal packages), apart from the tests'.
// (yamux's goroutines are yamux's: its Session.Close returns at once when
// the session is already closing, and they end a moment later.)
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "rtcp.Test") || strings.Contains(g, "testing.") {
			continue
		}
		if strings.Contains(g, "rtcp/internal/") || strings.Contains(g, "rtcp.(*") {
			own = append(own, g)
		}
	}
	return own
}

// TestListenerCloseWaits: with its sessions closed, Listener.Close returns
// only when every goroutine it owns has ended: not one is left the moment
// it returns. (The DP runs in a process of its own, so that every
// goroutine here is the server's or the client's.)
func TestListenerCloseWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	addr, _ := startDPProcess(t)
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			name := "waits-" + tr.String()
			l, err := (&ListenConfig{Transport: tr, PoolSize: 2}).Listen(context.Background(), addr, name)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			c, err := Dial(addr, name)
			if err != nil {
				t.Fatal(err)
			}
			sc := <-accepted
			go io.Copy(sc, sc)
			exchangeTCP(t, c, "hello")
			if len(ownGoroutines()) == 0 {
				t.Fatal("ownGoroutines sees no goroutine of a running session: it cannot prove anything")
			}
			c.Close()
			sc.Close()
			l.Close()
			// A goroutine that has signalled its owner's WaitGroup still
			// has to return: let such ones run, but do not wait for
			// anything that has work left.
			own := ownGoroutines()
			for i := 0; i < 10 && len(own) > 0; i++ {
				for range 100 {
					runtime.Gosched()
				}
				own = ownGoroutines()
			}
			if len(own) > 0 {
				t.Fatalf("%d goroutines of rtcp still run after Listener.Close returned:\n%s", len(own), strings.Join(own, "\n\n"))
			}
		})
	}
}

// TestDPCloseWaits: DiscoverPoint.Close returns only when every goroutine
// of the DP has ended, in the middle of a relayed session. The peers are
// hand-written Plan5 peers, so every goroutine of rtcp here is the DP's.
func TestDPCloseWaits(t *testing.T) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	say := func(c net.Conn, ms ...plan5.Message) {
		for _, m := range ms {
			if _, err := c.Write(plan5.AppendMessage(nil, m)); err != nil {
				t.Fatal(err)
			}
		}
	}
	hear := func(r *plan5.Reader, want plan5.Type) {
		m, err := r.ReadMessage()
		if err != nil || m.Type() != want {
			t.Fatalf("got %v, %v; want %v", m, err, want)
		}
	}
	v := plan5.Version
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sr := plan5.NewReader(s, 0)
	say(s, &plan5.Aloha{V: v, R: plan5.RoleIS, N: "hand", HeartBeat: 60000})
	hear(sr, plan5.TypeAloha)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cr := plan5.NewReader(c, 0)
	say(c, &plan5.Aloha{V: v, R: plan5.RoleIC, HeartBeat: 60000}, &plan5.Connect{N: "hand"})
	hear(cr, plan5.TypeAloha)
	hear(sr, plan5.TypeConnect)
	say(s, &plan5.Ack{X: 7})
	hear(cr, plan5.TypeAck)
	say(c, &plan5.Data{X: 1, C: []byte("in flight")})
	hear(sr, plan5.TypeData)

	dp.Close()
	own := ownGoroutines()
	for i := 0; i < 10 && len(own) > 0; i++ {
		for range 100 {
			runtime.Gosched()
		}
		own = ownGoroutines()
	}
	if len(own) > 0 {
		t.Fatalf("%d goroutines of the DP still run after Close returned:\n%s", len(own), strings.Join(own, "\n\n"))
	}
}
