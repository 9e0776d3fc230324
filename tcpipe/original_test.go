package tcpipe

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
	wire "rtcp/protocol/tcpipe"
)

// original plays the original tcpipe as the partner of the instance under
// test, written from SPEC.md and from what SEEDS.md (section 6) says the
// original does. For a Connect it connects to its target, which takes
// connectTime during which it reads nothing else (the original connects
// synchronously), and answers Disconnect (local) if it cannot; it carries
// Data both ways; it closes a connection on Disconnect and answers
// nothing; when a connection it made ends, it sends Disconnect; and Data
// for a connection it does not have is fatal: the original exits, and
// this one reports it on fatal and closes the link. What it sends reaches
// the instance latency later.
type original struct {
	link        net.Conn
	target      func(port uint16) (net.Conn, error)
	connectTime time.Duration
	latency     time.Duration

	connects chan time.Time // when each Connect arrived
	fatal    chan string    // why the original would have exited
	out      chan timed
	mu       sync.Mutex
	made     map[uint16]net.Conn
	wg       sync.WaitGroup
	carriers sync.WaitGroup // they send on out, which read closes after them
}

type timed struct {
	due   time.Time
	frame []byte
}

// startOriginal runs an original on link until link ends; stop closes it
// and waits for its goroutines.
func startOriginal(link net.Conn, target func(uint16) (net.Conn, error), connectTime, latency time.Duration) (o *original, stop func()) {
	o = &original{link: link, target: target, connectTime: connectTime, latency: latency,
		connects: make(chan time.Time, 64), fatal: make(chan string, 1),
		out: make(chan timed, 1024), made: make(map[uint16]net.Conn)}
	o.wg.Add(2)
	go o.write()
	go o.read()
	return o, func() {
		link.Close()
		o.wg.Wait()
	}
}

func (o *original) send(kind, local byte, port uint16, data []byte) {
	o.out <- timed{time.Now().Add(o.latency), appendFrame(nil, kind, local, port, data)}
}

func (o *original) write() {
	defer o.wg.Done()
	for m := range o.out {
		time.Sleep(time.Until(m.due))
		if _, err := o.link.Write(m.frame); err != nil {
			break
		}
	}
	for range o.out { // drain, so no sender blocks
	}
}

func (o *original) read() {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		for p, c := range o.made {
			c.Close()
			delete(o.made, p)
		}
		o.mu.Unlock()
		o.carriers.Wait()
		close(o.out)
	}()
	r := wire.NewReader(o.link)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		o.mu.Lock()
		c := o.made[f.Port]
		o.mu.Unlock()
		switch {
		case f.Kind == wire.Connect:
			o.connects <- time.Now()
			if c != nil {
				continue // the original ignores it
			}
			time.Sleep(o.connectTime)
			c, err := o.target(f.Port)
			if err != nil {
				o.send(2, 1, f.Port, nil)
				continue
			}
			o.mu.Lock()
			o.made[f.Port] = c
			o.mu.Unlock()
			o.carriers.Add(1)
			go o.carry(f.Port, c)
		case f.Kind == wire.Data && (f.Local || c == nil):
			o.fatal <- fmt.Sprintf("Data for port %d, which it has no connection on: the original exits", f.Port)
			o.link.Close()
			return
		case f.Kind == wire.Data:
			c.Write(f.Data)
		case f.Kind == wire.Disconnect && !f.Local && c != nil:
			o.mu.Lock()
			delete(o.made, f.Port)
			o.mu.Unlock()
			c.Close() // and no answer
		}
	}
}

// carry sends what the made connection c on port says, as Data, and its
// end as Disconnect, unless the instance ended it first.
func (o *original) carry(port uint16, c net.Conn) {
	defer o.carriers.Done()
	buf := make([]byte, wire.MaxData)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			o.send(0, 1, port, append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			break
		}
	}
	o.mu.Lock()
	mine := o.made[port] == c
	if mine {
		delete(o.made, port)
	}
	o.mu.Unlock()
	if mine {
		o.send(2, 1, port, nil)
	}
}

// userPorts is the in-memory listener of each port of an instance.
type userPorts map[uint16]*memnet.Listener

func (u userPorts) listen(_, addr string) (net.Listener, error) {
	_, ps, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(ps)
	if l := u[uint16(p)]; l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("no test listener for %s", addr)
}

// startWithOriginal runs a server instance with the given settings,
// accepting users on port in memory, with an original as its partner.
// Call it in a synctest bubble.
func startWithOriginal(t *testing.T, srv *Server, port uint16, target func(uint16) (net.Conn, error), connectTime, latency time.Duration) (*original, *memnet.Listener) {
	t.Helper()
	users := userPorts{port: memnet.New("")}
	srv.Ports = []uint16{port}
	srv.init()
	srv.in.listen = users.listen
	up := make(chan struct{}, 1)
	srv.in.ready = func() { up <- struct{}{} }
	l := memnet.New("")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	link, err := l.DialContext(t.Context(), "tcp", "")
	if err != nil {
		t.Fatal(err)
	}
	<-up
	o, stop := startOriginal(link, target, connectTime, latency)
	t.Cleanup(func() {
		srv.Close()
		<-done
		stop()
		select {
		case why := <-o.fatal:
			t.Errorf("the original partner failed: %s", why)
		default:
		}
	})
	return o, users[port]
}

// TestSequentialUsers connects users one after the other in a tight
// loop, through an instance whose partner is an original, to a target
// that sends a little more after each reply (Data that may cross the
// user's end on the wire). Every connection is carried, none is refused,
// none sees Data of the connection before it, and a new connection waits
// only as long as the partner may still send for the old one: not at all
// once the partner's Disconnect came, at most Quiet after our own.
func TestSequentialUsers(t *testing.T) {
	const n = 30
	const port = 40000
	const latency = 20 * time.Millisecond
	for _, targetEnds := range []bool{false, true} {
		name := map[bool]string{false: "the user ends", true: "the target ends"}[targetEnds]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var wg sync.WaitGroup
				defer wg.Wait()
				target := func(uint16) (net.Conn, error) {
					a, b := net.Pipe()
					wg.Go(func() {
						defer b.Close()
						req := make([]byte, 64)
						k, err := b.Read(req)
						if err != nil {
							return
						}
						b.Write(append([]byte("reply to "), req[:k]...))
						if targetEnds {
							return
						}
						time.Sleep(time.Millisecond)
						b.Write([]byte(" and a late word"))
						io.Copy(io.Discard, b)
					})
					return a, nil
				}
				srv := &Server{}
				o, users := startWithOriginal(t, srv, port, target, 0, latency)
				var lastEnd time.Time
				for i := range n {
					c, err := users.DialContext(t.Context(), "tcp", "")
					if err != nil {
						t.Fatal(err)
					}
					dialed := time.Now()
					req := fmt.Sprintf("user %d", i)
					c.Write([]byte(req))
					want := "reply to " + req
					got := make([]byte, len(want))
					if k, err := io.ReadFull(c, got); err != nil || string(got) != want {
						c.Close()
						t.Fatalf("user %d read %q, %v; want %q (a connection refused, or Data of the one before)", i, got[:k], err, want)
					}
					if targetEnds {
						if rest, err := io.ReadAll(c); len(rest) != 0 || err != nil {
							t.Errorf("user %d read %q, %v after its reply; want the end", i, rest, err)
						}
					}
					c.Close()
					held := (<-o.connects).Sub(dialed)
					switch {
					case i == 0 || targetEnds:
						if held != 0 {
							t.Errorf("user %d was held %v before its Connect; want none", i, held)
						}
					case dialed.Add(held).Sub(lastEnd) > defaultQuiet:
						t.Errorf("user %d was held until %v after the last connection ended; want at most Quiet, %v", i, dialed.Add(held).Sub(lastEnd), defaultQuiet)
					}
					lastEnd = time.Now()
				}
			})
		})
	}
}

// TestSequentialUsersTCP is TestSequentialUsers over loopback TCP, where
// a user closes and connects again before the instance has read its
// close: 30 users in a tight loop, each carried.
//
// The new user is held until the instance has ended the last connection,
// for at most Quiet, and is refused (closed with its bytes unread: a
// reset) if that takes longer. Ending it is local work, 0.3 ms at the
// median, but up to 100 ms under -race on a loaded machine, longer than
// the 5 ms Quiet that keeps the drain waits after each user short (an
// original partner never answers our Disconnect); so here the hold for
// the last connection is bounded by a minute instead.
func TestSequentialUsersTCP(t *testing.T) {
	p := freePort(t, "127.0.0.2")
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Quiet: 5 * time.Millisecond, FirstDataHold: time.Millisecond}
	srv.init()
	srv.in.busyWait = time.Minute
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	link := dial(t, partnerAddr)
	wait(t, up, "partner link")
	var wg sync.WaitGroup
	defer wg.Wait()
	echo := func(uint16) (net.Conn, error) {
		a, b := net.Pipe()
		wg.Go(func() {
			defer b.Close()
			io.Copy(b, b)
		})
		return a, nil
	}
	o, stop := startOriginal(link, echo, 0, 0)
	defer stop()
	for i := range 30 {
		c, err := net.Dial("tcp", hostPort("127.0.0.2", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := echoOnce(c, []byte(fmt.Sprintf("user %d", i))); err != nil {
			t.Fatalf("user %d: %v", i, err)
		}
		c.Close()
		<-o.connects
	}
	select {
	case why := <-o.fatal:
		t.Errorf("the original partner failed: %s", why)
	default:
	}
}

// TestFirstDataHold checks, against an original partner, that a user's
// first bytes wait for the partner to speak of the connection, for at most
// FirstDataHold: if the partner's target refuses, they are dropped and the
// original never gets Data for a connection it could not make.
func TestFirstDataHold(t *testing.T) {
	const port = 40001
	const latency = 10 * time.Millisecond
	refuse := func(uint16) (net.Conn, error) { return nil, errors.New("connection refused") }
	tests := []struct {
		name        string
		hold        time.Duration
		connectTime time.Duration
		banner      bool          // the target speaks first
		wantWait    time.Duration // from the Connect to the first Data at the partner; -1: none comes
	}{
		{"refused at once", 0, 0, false, -1},
		{"refused after 50ms", 0, 50 * time.Millisecond, false, -1},
		{"silent target", 0, 0, false, defaultFirstDataHold},
		{"a target that speaks first", 0, 0, true, latency},
		{"no hold", -1, 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var wg sync.WaitGroup
				defer wg.Wait()
				got := make(chan time.Time, 1)
				target := refuse
				if tt.wantWait >= 0 {
					target = func(uint16) (net.Conn, error) {
						a, b := net.Pipe()
						wg.Go(func() {
							defer b.Close()
							if tt.banner {
								b.Write([]byte("banner"))
							}
							if _, err := b.Read(make([]byte, 64)); err == nil {
								got <- time.Now()
							}
							io.Copy(io.Discard, b)
						})
						return a, nil
					}
				}
				srv := &Server{FirstDataHold: tt.hold}
				o, users := startWithOriginal(t, srv, port, target, tt.connectTime, latency)
				c, err := users.DialContext(t.Context(), "tcp", "")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if tt.banner {
					if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
						t.Fatal(err)
					}
				}
				c.Write([]byte("first bytes"))
				connected := <-o.connects
				if tt.wantWait < 0 {
					if rest, err := io.ReadAll(c); len(rest) != 0 || err != nil {
						t.Errorf("the user read %q, %v; want the end of a refused connection", rest, err)
					}
					synctest.Wait()
					select {
					case why := <-o.fatal:
						t.Fatalf("the original partner failed: %s", why)
					default:
					}
					return
				}
				if wait := (<-got).Sub(connected); wait != tt.wantWait+tt.connectTime {
					t.Errorf("the first bytes reached the target %v after the Connect, want %v", wait, tt.wantWait)
				}
			})
		})
	}
}
