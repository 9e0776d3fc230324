package memnet

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// accept dials with dial and returns both ends.
func accept(t *testing.T, l *Listener, dial DialFunc) (peer, far net.Conn) {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	peer, err := dial(t.Context(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return peer, <-got
}

func TestDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New("dp.test:9000")
		defer l.CutAll()
		start := time.Now()
		peer, far := accept(t, l, l.Dialer("a", 100*time.Millisecond))
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Errorf("dial took %v, want one round trip, 100ms", d)
		}
		start = time.Now()
		go peer.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Errorf("bytes took %v, want half a round trip, 50ms", d)
		}
		if n := len(l.Dials("a")); n != 1 {
			t.Errorf("Dials = %d, want 1", n)
		}
	})
}

func TestTapBlackholeAndCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New("")
		defer l.CutAll()
		peer, far := accept(t, l, l.TapDialer("a"))
		l.Last("a").Blackhole()
		go peer.Write([]byte("lost"))
		read := make(chan error, 1)
		go func() {
			_, err := far.Read(make([]byte, 4))
			read <- err
		}()
		synctest.Wait()
		select {
		case err := <-read:
			t.Fatalf("a blackholed link delivered: Read returned %v", err)
		default:
		}
		l.Link("a", 0).Cut()
		if err := <-read; err != io.EOF {
			t.Errorf("Read after Cut = %v, want io.EOF", err)
		}
		peer.Close()
		far.Close()
	})
}

func TestDownAndClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New("")
		l.SetDown("a", true)
		if _, err := l.TapDialer("a")(t.Context(), "tcp", ""); err == nil {
			t.Fatal("a dial with a label that is down worked")
		}
		if n := len(l.Dials("a")); n != 1 {
			t.Errorf("Dials = %d, want the failed one", n)
		}
		l.Close()
		if _, err := l.DialContext(context.Background(), "tcp", ""); !errors.Is(err, net.ErrClosed) {
			t.Errorf("dial after Close = %v, want net.ErrClosed", err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	})
}

func TestDialFrom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		at := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
		from := &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 50000}
		l := NewAt(at)
		got := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			got <- c
		}()
		peer, far, err := l.DialFrom(t.Context(), from)
		if err != nil {
			t.Fatal(err)
		}
		if c := <-got; c != far {
			t.Errorf("Accept returned %v, want DialFrom's far end", c)
		}
		if peer.LocalAddr() != from || peer.RemoteAddr() != at || far.LocalAddr() != at || far.RemoteAddr() != from {
			t.Errorf("addresses: peer %v->%v, far %v->%v", peer.LocalAddr(), peer.RemoteAddr(), far.LocalAddr(), far.RemoteAddr())
		}
		far.Close()
		select {
		case <-far.Closed():
		default:
			t.Error("Closed is open after Close")
		}
		peer.Close()
		l.Close()
	})
}
