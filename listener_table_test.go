package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"

	"rtcp/internal/memnet"
)

// memDP runs a DiscoverPoint on a memnet.Listener until cleanup; call it inside
// the bubble that uses it.
func memDP(t *testing.T) (*memnet.Listener, func()) {
	t.Helper()
	mn := memnet.New("dp.example:9000")
	dp := new(DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(mn) }()
	return mn, func() {
		dp.Close()
		if err := <-served; !errors.Is(err, ErrDiscoverPointClosed) {
			t.Errorf("Serve returned %v, want ErrDiscoverPointClosed", err)
		}
	}
}

// TestListenerTable is the listener contract of STYLE.md rule 10, run in a
// bubble so that "blocks" is a fact (synctest.Wait) and not a guess.
func TestListenerTable(t *testing.T) {
	const name = "svc"
	tests := []struct {
		name string
		run  func(t *testing.T, mn *memnet.Listener, l net.Listener)
	}{
		{"Accept blocks until a session arrives", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					t.Errorf("Accept: %v", err)
				}
				accepted <- c
			}()
			synctest.Wait()
			select {
			case c := <-accepted:
				t.Fatalf("Accept returned %v before any client dialled", c)
			default:
			}
			d := Dialer{Name: "alice", Dial: mn.DialContext}
			c, err := d.DialContext(context.Background(), mn.Addr().String(), name)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			if s == nil {
				t.Fatal("no session")
			}
			defer s.Close()
			if got := s.RemoteAddr().String(); !strings.HasPrefix(got, "alice@") {
				t.Errorf("accepted session's RemoteAddr = %q, want alice@...", got)
			}
			if got, want := s.LocalAddr().String(), name+"@"+mn.Addr().String(); got != want {
				t.Errorf("accepted session's LocalAddr = %q, want %q", got, want)
			}
			c.Write([]byte("hi"))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hi" {
				t.Fatalf("server read %q, %v", buf, err)
			}
		}},
		{"Close unblocks a blocked Accept", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			errc := make(chan error, 1)
			go func() {
				_, err := l.Accept()
				errc <- err
			}()
			synctest.Wait()
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			err := <-errc
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked Accept returned %v, want an error wrapping net.ErrClosed", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "accept" || oe.Net != "rtcp" {
				t.Errorf("Accept error %#v, want a *net.OpError{Op: accept, Net: rtcp}", err)
			}
		}},
		{"Accept after Close", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			l.Close()
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
			}
		}},
		{"Close twice", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			if err := l.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		}},
		{"Addr after Close", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			l.Close()
			a := l.Addr()
			if a.Network() != "rtcp" || a.String() != name+"@"+mn.Addr().String() {
				t.Fatalf("Addr after Close = %s %q, want rtcp %q", a.Network(), a, name+"@"+mn.Addr().String())
			}
		}},
		{"Close lets the DP refuse new sessions", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			l.Close()
			synctest.Wait() // the DP has seen the link end
			d := Dialer{Dial: mn.DialContext}
			_, err := d.DialContext(context.Background(), mn.Addr().String(), name)
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), `"`+name+`"`) {
				t.Fatalf("Dial after the listener closed: %v, want a refusal naming %q", err, name)
			}
		}},
		{"accepted sessions outlive Close", func(t *testing.T, mn *memnet.Listener, l net.Listener) {
			d := Dialer{Dial: mn.DialContext}
			c, err := d.DialContext(context.Background(), mn.Addr().String(), name)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			closed := make(chan struct{})
			go func() { l.Close(); close(closed) }()
			// The session still carries bytes both ways, and ends cleanly.
			c.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(s, buf); err != nil {
				t.Fatalf("server read after listener Close: %v", err)
			}
			s.Write([]byte("pong"))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client read after listener Close: %q, %v", buf, err)
			}
			c.Close()
			if _, err := s.Read(buf); err != io.EOF {
				t.Fatalf("server read after the client closed: %v, want io.EOF", err)
			}
			s.Close()
			<-closed
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mn, stopDP := memDP(t)
				defer stopDP()
				lc := ListenConfig{Dial: mn.DialContext}
				l, err := lc.Listen(context.Background(), mn.Addr().String(), name)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				tt.run(t, mn, l)
			})
		})
	}
}
