package serve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeListener hands out what is sent on accepts: a net.Conn or an error.
type fakeListener struct {
	accepts   chan any
	closeOnce sync.Once
	closed    chan struct{}
}

func newFakeListener() *fakeListener {
	return &fakeListener{accepts: make(chan any), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case v := <-l.accepts:
		if err, ok := v.(error); ok {
			return nil, err
		}
		return v.(net.Conn), nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func (l *fakeListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// TestServeBackoff: temporary Accept errors are retried after 5 ms,
// doubling up to 1 s; a connection resets the wait.
func TestServeBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		l := newFakeListener()
		handled := make(chan net.Conn)
		served := make(chan error)
		go func() {
			served <- g.Serve(l, func(c net.Conn) bool { handled <- c; return false })
		}()
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		want := []time.Duration{0, 5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
		for i, d := range want {
			start := time.Now()
			l.accepts <- emfile
			if got := time.Since(start); got != d*time.Millisecond {
				t.Fatalf("Accept %d came %v after the one before; want %v", i, got, d*time.Millisecond)
			}
		}
		start := time.Now()
		a, b := net.Pipe()
		l.accepts <- a
		if got := <-handled; got != a {
			t.Fatalf("handled %v, want the accepted conn", got)
		}
		if time.Since(start) != time.Second {
			t.Fatalf("the connection was accepted %v after the last error; want 1s", time.Since(start))
		}
		if _, err := b.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the handler returned, the peer read %v; want io.EOF (closed)", err)
		}
		start = time.Now()
		l.accepts <- emfile
		l.accepts <- emfile // the wait starts again from 5 ms
		if got := time.Since(start); got != 5*time.Millisecond {
			t.Fatalf("after a connection, the first retry came after %v; want 5ms", got)
		}
		g.Close()
		if err := <-served; err != ErrClosed {
			t.Fatalf("Serve returned %v after Close; want ErrClosed", err)
		}
		b.Close()
	})
}

// TestCloseDuringBackoff: Close does not wait for the retry.
func TestCloseDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		l := newFakeListener()
		served := make(chan error)
		go func() { served <- g.Serve(l, func(net.Conn) bool { return false }) }()
		timeout := &net.OpError{Op: "accept", Err: os.ErrDeadlineExceeded}
		for range 12 { // the wait is now 1 s
			l.accepts <- timeout
		}
		start := time.Now()
		synctest.Wait()
		g.Close()
		if err := <-served; err != ErrClosed {
			t.Fatalf("Serve returned %v; want ErrClosed", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Serve returned %v after Close; want at once", d)
		}
		if !l.isClosed() {
			t.Fatal("Serve returned without closing its listener")
		}
	})
}

func TestServeFatalError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		defer g.Close()
		l := newFakeListener()
		served := make(chan error)
		go func() { served <- g.Serve(l, func(net.Conn) bool { return false }) }()
		bad := errors.New("listener broken")
		l.accepts <- bad
		if err := <-served; err != bad {
			t.Fatalf("Serve returned %v; want the Accept error", err)
		}
		if !l.isClosed() {
			t.Fatal("Serve returned without closing its listener")
		}
	})
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dial(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCloseEndsAll: Close unblocks Serve, closes the connections and
// returns only when the handlers have.
func TestCloseEndsAll(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("Reset=%v", reset), func(t *testing.T) {
			g := Group{Reset: reset}
			l := listen(t)
			started := make(chan struct{})
			handlerDone := false
			served := make(chan error)
			go func() {
				served <- g.Serve(l, func(c net.Conn) bool {
					close(started)
					c.Read(make([]byte, 1)) // until Close
					handlerDone = true      // Close's return must see it (-race)
					return false
				})
			}()
			c := dial(t, l)
			<-started
			g.Close()
			if !handlerDone {
				t.Fatal("Close returned before the handler")
			}
			if err := <-served; err != ErrClosed {
				t.Fatalf("Serve returned %v; want ErrClosed", err)
			}
			_, err := c.Read(make([]byte, 1))
			if reset && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("with Reset, the peer read %v; want a reset", err)
			}
			if !reset && err != io.EOF {
				t.Fatalf("the peer read %v; want io.EOF", err)
			}
			if !g.Closed() || !g.Stopped() {
				t.Fatal("Closed or Stopped false after Close")
			}
			select {
			case <-g.Done():
			default:
				t.Fatal("Done not closed after Close")
			}
			g.Close() // twice is fine
		})
	}
}

// TestKept: a kept connection outlives its handler until Release, and
// Close closes it while it is tracked.
func TestKept(t *testing.T) {
	var g Group
	l := listen(t)
	kept := make(chan net.Conn)
	served := make(chan error)
	go func() {
		served <- g.Serve(l, func(c net.Conn) bool { kept <- c; return true })
	}()
	peer := dial(t, l)
	c := <-kept
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("a kept connection is not usable after its handler: %v", err)
	}
	if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if n := g.Conns(); n != 1 {
		t.Fatalf("Conns = %d with one kept; want 1", n)
	}
	g.Release(c)
	if n := g.Conns(); n != 0 {
		t.Fatalf("Conns = %d after Release; want 0", n)
	}
	g.Track(c)
	g.Close()
	if err := <-served; err != ErrClosed {
		t.Fatalf("Serve returned %v; want ErrClosed", err)
	}
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after Close the peer of a tracked conn read %v; want io.EOF", err)
	}
}

// TestCloseListeners: Serve ends, the connections in flight go on, new
// ones are refused, goroutines may still start, and Close ends the rest.
func TestCloseListeners(t *testing.T) {
	var g Group
	l := listen(t)
	inFlight := make(chan net.Conn)
	served := make(chan error)
	go func() {
		served <- g.Serve(l, func(c net.Conn) bool {
			inFlight <- c
			io.Copy(c, c) // echo until Close
			return false
		})
	}()
	peer := dial(t, l)
	<-inFlight
	g.CloseListeners()
	if err := <-served; err != ErrClosed {
		t.Fatalf("Serve returned %v after CloseListeners; want ErrClosed", err)
	}
	if !g.Stopped() || g.Closed() {
		t.Fatalf("after CloseListeners: Stopped %v, Closed %v; want true, false", g.Stopped(), g.Closed())
	}
	if _, err := peer.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
		t.Fatalf("a connection in flight stopped with CloseListeners: %v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	if g.Track(a) {
		t.Fatal("Track took a connection after CloseListeners")
	}
	if err := g.ServeConn(a, func(net.Conn) bool { t.Error("ServeConn served after CloseListeners"); return false }); err != ErrClosed {
		t.Fatalf("ServeConn after CloseListeners: %v; want ErrClosed", err)
	}
	ran := make(chan struct{})
	if !g.Go(func() { close(ran) }) {
		t.Fatal("Go refused after CloseListeners; only Close stops it")
	}
	<-ran
	if err := g.Serve(listen(t), nil); err != ErrClosed {
		t.Fatalf("Serve after CloseListeners: %v; want ErrClosed", err)
	}
	g.Close()
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after Close the peer read %v; want io.EOF", err)
	}
}

// TestAfterClose: nothing new starts after Close.
func TestAfterClose(t *testing.T) {
	var g Group
	g.Close()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if g.Track(a) {
		t.Fatal("Track took a connection after Close")
	}
	if g.Go(func() { t.Error("Go ran f after Close") }) {
		t.Fatal("Go returned true after Close")
	}
	l := listen(t)
	if err := g.Serve(l, nil); err != ErrClosed {
		t.Fatalf("Serve after Close: %v; want ErrClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Close left its listener open (Accept: %v)", err)
	}
}

// TestServeConn: a connection from elsewhere is served in the caller's
// goroutine, and Close waits for it.
func TestServeConn(t *testing.T) {
	var g Group
	a, b := net.Pipe()
	defer b.Close()
	started := make(chan struct{})
	handled := make(chan struct{}) // closed as handle returns
	returned := make(chan error, 1)
	go func() {
		returned <- g.ServeConn(a, func(c net.Conn) bool {
			defer close(handled)
			close(started)
			c.Read(make([]byte, 1)) // until Close
			return false
		})
	}()
	<-started
	if n := g.Conns(); n != 1 {
		t.Fatalf("Conns = %d while ServeConn runs; want 1", n)
	}
	g.Close()
	// Close waits for handle, not for ServeConn's caller to receive its
	// result: that send may come after Close returns.
	select {
	case <-handled:
	default:
		t.Fatal("Close returned before the connection's handler")
	}
	if err := <-returned; err != nil {
		t.Fatalf("ServeConn returned %v; want nil", err)
	}
}

func TestTemporary(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENOBUFS)}, true},
		{&net.OpError{Op: "accept", Err: os.ErrDeadlineExceeded}, true},
		{&net.OpError{Op: "accept", Err: net.ErrClosed}, false},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EINVAL)}, false},
		{io.EOF, false},
	} {
		if got := temporary(tc.err); got != tc.want {
			t.Errorf("temporary(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}
