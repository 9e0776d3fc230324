package rtcp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/relay"
)

// TestUnwrapSplice checks which sessions hand a relay their TCP connection
// and that a relay joining the server's Conn to a local TCP service (what
// rtcp expose does) carries data and half-close both ways in every mode.
func TestUnwrapSplice(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dp := startDP(t, nil)
			l := listen(t, &ListenConfig{Transport: m.server}, dp, "svc")

			// The local service: echo until the peer half-closes.
			svc, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			go func() {
				c, err := svc.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()

			joined := make(chan error, 1)
			checked := make(chan struct{}) // the server has looked at Unwrap
			go func() {
				c, err := l.Accept()
				if err != nil {
					close(checked)
					joined <- err
					return
				}
				// Before the client writes: a data link that read the
				// session's first bytes with its handshake holds them in a
				// buffer, and then has no TCP connection to hand out.
				wantRaw := m.server == TransportTCP
				if got := c.(*Conn).Unwrap() != nil; got != wantRaw {
					t.Errorf("server Conn.Unwrap() != nil is %v, want %v", got, wantRaw)
				}
				close(checked)
				s, err := net.Dial("tcp", svc.Addr().String())
				if err != nil {
					c.Close()
					joined <- err
					return
				}
				_, err = relay.Join(c, s, nil)
				joined <- err
			}()

			d := Dialer{Transport: m.client}
			c, err := d.DialContext(context.Background(), dp, "svc")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, want := c.(*Conn).Unwrap() != nil, m.client != TransportJSON; got != want {
				t.Errorf("client Conn.Unwrap() != nil is %v, want %v", got, want)
			}
			msg := bytes.Repeat([]byte("splice "), 200000)
			<-checked
			go func() {
				c.Write(msg)
				c.(*Conn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %d bytes back, want %d", len(got), len(msg))
			}
			c.Close()
			if err := <-joined; err != nil {
				t.Errorf("relay.Join: %v", err)
			}
		})
	}
}

// TestConnNetConn: a Conn on a multiplexed link gives a relay its stream,
// whose bytes the relay then moves with the stream's fast paths
// (relay.Carrier); a Conn with a TCP connection of its own gives none.
func TestConnNetConn(t *testing.T) {
	type pusher interface {
		PushTo(w io.Writer, count func(n int)) (int64, error)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dp := startDP(t, nil)
			l := listen(t, &ListenConfig{Transport: m.server}, dp, "svc")
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					t.Error(err)
				}
				accepted <- c
			}()
			d := Dialer{Transport: m.client}
			c, err := d.DialContext(context.Background(), dp, "svc")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			if s == nil {
				return
			}
			defer s.Close()
			for _, side := range []struct {
				who  string
				c    net.Conn
				want bool
			}{
				{"client", c, m.client == TransportJSON},
				{"server", s, m.server != TransportTCP},
			} {
				st := side.c.(*Conn).NetConn()
				if got := st != nil; got != side.want {
					t.Errorf("%s Conn.NetConn() != nil is %v, want %v", side.who, got, side.want)
				}
				if _, ok := st.(pusher); st != nil && !ok {
					t.Errorf("%s Conn.NetConn() is a %T, which has no PushTo", side.who, st)
				}
			}
		})
	}
}

// TestTakeBuffered: a connection whose link's handshake brought the
// session's first bytes (a server's Conn on a data link; at the DP, a
// client's raw leg whose bytes came with its Connect) hands them over with
// TakeBuffered and then its TCP connection with Unwrap, and relay.Join
// (rtcp expose's and the DP's relay) delivers those bytes first, then the
// rest, both ways, over the TCP connections themselves.
func TestTakeBuffered(t *testing.T) {
	type unwrapper interface {
		net.Conn
		relay.Buffered
		Unwrap() *net.TCPConn
	}
	for _, tc := range []struct {
		name string
		wrap func(link *net.TCPConn, ahead []byte) unwrapper
	}{
		{"server's Conn", func(link *net.TCPConn, ahead []byte) unwrapper {
			return newConn(&rawConn{Conn: newBufferedConn(link, ahead), local: link.LocalAddr(), remote: link.RemoteAddr()}, nil)
		}},
		{"DP's client leg", func(link *net.TCPConn, ahead []byte) unwrapper {
			return newBufferedConn(link, ahead)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link, dpSide := flowtest.TCPPair(t)
			svc, local := flowtest.TCPPair(t)
			c := tc.wrap(link, []byte("ahead "))
			if c.Unwrap() != nil {
				t.Fatal("Unwrap gave the TCP connection while bytes wait in the buffer")
			}
			joined := make(chan error, 1)
			go func() {
				_, err := relay.Join(c, local, nil)
				joined <- err
			}()
			if _, err := dpSide.Write([]byte("and the rest")); err != nil {
				t.Fatal(err)
			}
			dpSide.CloseWrite()
			got, err := io.ReadAll(svc)
			if err != nil || string(got) != "ahead and the rest" {
				t.Fatalf("the service read %q, %v; want %q", got, err, "ahead and the rest")
			}
			if c.Unwrap() != link {
				t.Error("after Join took the buffered bytes, Unwrap did not give the TCP connection")
			}
			if b := c.TakeBuffered(); b != nil {
				t.Errorf("TakeBuffered again = %q; want nil", b)
			}
			if _, err := svc.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			svc.CloseWrite()
			if got, err := io.ReadAll(dpSide); err != nil || string(got) != "answer" {
				t.Fatalf("the other side read %q, %v; want %q", got, err, "answer")
			}
			if err := <-joined; err != nil {
				t.Fatalf("relay.Join: %v", err)
			}
		})
	}
}
