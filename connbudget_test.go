package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/tcpreset"
)

// chanListener is an in-memory listener: each connection sent on conns is
// accepted.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// budgetDoor serves a door's listener in a test: dial reports whether the
// door admits one more connection.
type budgetDoor struct {
	t        *testing.T
	in       *chanListener
	accepted chan net.Conn
	open     []net.Conn // both ends of every connection admitted
	wg       sync.WaitGroup
}

func serveBudgetDoor(t *testing.T, d *Door) *budgetDoor {
	bd := &budgetDoor{t: t, in: newChanListener(), accepted: make(chan net.Conn)}
	l := d.Listener(bd.in)
	bd.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			bd.accepted <- c
		}
	})
	t.Cleanup(func() {
		l.Close()
		bd.closeAll()
		bd.wg.Wait()
	})
	return bd
}

// dial opens a connection to the door and reports whether it was
// admitted: accepted, or closed at once.
func (bd *budgetDoor) dial() bool {
	bd.t.Helper()
	cli, srv := net.Pipe()
	bd.in.conns <- srv
	refused := make(chan struct{})
	bd.wg.Go(func() {
		if _, err := cli.Read(make([]byte, 1)); err == io.EOF {
			close(refused)
		}
	})
	select {
	case c := <-bd.accepted:
		bd.open = append(bd.open, c, cli)
		return true
	case <-refused:
		cli.Close()
		return false
	}
}

// hangUp closes the oldest admitted connection.
func (bd *budgetDoor) hangUp() {
	bd.open[0].Close()
	bd.open[1].Close()
	bd.open = bd.open[2:]
}

func (bd *budgetDoor) closeAll() {
	for len(bd.open) > 0 {
		bd.hangUp()
	}
}

func (bd *budgetDoor) dialN(n int) (admitted int) {
	for range n {
		if bd.dial() {
			admitted++
		}
	}
	return admitted
}

func TestConnBudgetDoorCap(t *testing.T) {
	b := &ConnBudget{Max: 100}
	d := serveBudgetDoor(t, b.Door("api", 2))
	if got := d.dialN(3); got != 2 {
		t.Fatalf("a door with a cap of 2 admitted %d of 3", got)
	}
	d.hangUp()
	if !d.dial() {
		t.Fatal("the door refused a connection after one of its two ended")
	}
	st := b.Stats()
	if st.Open != 2 || len(st.Doors) != 1 || st.Doors[0].Refused != 1 || st.Doors[0].Open != 2 || st.Doors[0].Max != 2 {
		t.Errorf("stats %+v: want 2 open and 1 refused", st)
	}
}

// TestConnBudgetNoDoorStarves floods one door: it takes its part and all
// that is shared, and the other door still gets its part.
func TestConnBudgetNoDoorStarves(t *testing.T) {
	b := &ConnBudget{Max: 8} // two doors: a part of 2 each, and 4 to share
	flood := serveBudgetDoor(t, b.Door("flooded", 0))
	other := serveBudgetDoor(t, b.Door("other", 0))
	if got := flood.dialN(20); got != 6 {
		t.Fatalf("the flooded door admitted %d, want its part (2) and the shared 4", got)
	}
	if got := other.dialN(2); got != 2 {
		t.Fatalf("the other door admitted %d of its part of 2 while the first was flooded", got)
	}
	if other.dial() {
		t.Fatal("a door admitted a connection over the budget")
	}
	flood.hangUp()
	if !other.dial() {
		t.Fatal("a borrowed place that was given back went to no one")
	}
	if flood.dial() {
		t.Fatal("the flooded door took back a place the other had borrowed")
	}
	st := b.Stats()
	if st.Max != 8 || st.Open != 8 || st.Doors[0].Part != 2 || st.Doors[0].Refused != 15 {
		t.Errorf("stats %+v", st)
	}
}

// TestConnBudgetCappedDoorShares: a door's cap below its part leaves the
// rest of the part to share.
func TestConnBudgetCappedDoorShares(t *testing.T) {
	b := &ConnBudget{Max: 8}
	b.Door("metrics", 1)
	d := serveBudgetDoor(t, b.Door("main", 0))
	if got := d.dialN(10); got != 7 {
		t.Fatalf("admitted %d, want 7: the budget less the metrics door's cap", got)
	}
}

// TestConnBudgetTCP: a refusal is a reset, and an admitted connection is
// the TCP connection still (the relay splices it; SetLinger works).
func TestConnBudgetTCP(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ConnBudget{Max: 10}
	l := b.Door("port", 1).Listener(tl)
	defer l.Close()
	first, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if tcpreset.Of(c) == nil {
		t.Errorf("an admitted connection is %T, which does not unwrap to its TCP connection", c)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	// On loopback the reset may come before connect returns.
	second, err := net.Dial("tcp", l.Addr().String())
	if err == nil {
		defer second.Close()
		second.SetReadDeadline(time.Now().Add(10 * time.Second)) // only a hang ends here
		_, err = second.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection over the cap: %v, want a reset", err)
	}
	c.Close()
	third, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if c := <-accepted; c != nil {
		c.Close()
	}
	if st := b.Stats(); st.Doors[0].Refused != 1 {
		t.Errorf("refused %d, want 1", st.Doors[0].Refused)
	}
}

func TestDefaultConnBudget(t *testing.T) {
	n := DefaultConnBudget()
	if lim := openFileLimit(); n < 1 || lim > 0 && n >= lim {
		t.Errorf("DefaultConnBudget() = %d with RLIMIT_NOFILE %d: want a positive number below it", n, lim)
	}
	if got := (&ConnBudget{}).Stats().Max; got != n {
		t.Errorf("a zero ConnBudget's Max is %d, want %d", got, n)
	}
}

// TestDiscoverPointOnDoor serves a DP on a door: every transport relays,
// and every connection gives its place back when it ends.
func TestDiscoverPointOnDoor(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			b := &ConnBudget{Max: 100}
			tl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			dp := new(DiscoverPoint)
			served := make(chan error, 1)
			go func() { served <- dp.Serve(b.Door("listen", 0).Listener(tl)) }()
			addr := tl.Addr().String()

			l, err := (&ListenConfig{Transport: m.server}).Listen(context.Background(), addr, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			echo(t, l)
			c, err := (&Dialer{Transport: m.client}).DialContext(context.Background(), addr, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			msg := bytes.Repeat([]byte("door "), 20000)
			go func() {
				c.Write(msg)
				c.(*Conn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo through a DP on a door: %d of %d bytes, %v", len(got), len(msg), err)
			}
			c.Close()
			l.Close()
			dp.Close()
			if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
				t.Errorf("Serve = %v", err)
			}
			if st := b.Stats(); st.Open != 0 {
				t.Errorf("%d connections still count against the budget after the DP closed", st.Open)
			}
		})
	}
}
