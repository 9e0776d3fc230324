package rtcp

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/relay"
	"rtcp/protocol/plan5"
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

// keepScanner is a relay.Scanner that passes every byte and keeps a
// copy of what it read.
type keepScanner struct{ got []byte }

func (s *keepScanner) Scan(chunk []byte) (int, error) {
	s.got = append(s.got, chunk...)
	return len(chunk), nil
}
func (s *keepScanner) Plain() bool { return false }
func (s *keepScanner) End() error  { return nil }

// TestTakeBufferedNotWhereReadOrEncrypted: a DP's client leg whose bytes
// came with its handshake keeps them for a Scanner that reads its
// direction (a brokered session's records), and never gives a relay the
// TCP connection then; over TLS (a DP with a TLSConfig) it hands its
// bytes over but never its TCP connection, whose bytes are not the
// session's. Both ways, the bytes ahead come first and are counted.
func TestTakeBufferedNotWhereReadOrEncrypted(t *testing.T) {
	pki := newTestPKI(t, "dp")
	for _, tc := range []struct {
		name    string
		scanned bool
		tls     bool
	}{{"scanned", true, false}, {"tls", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			link, dpSide := flowtest.TCPPair(t)
			svc, local := flowtest.TCPPair(t)
			var under net.Conn = link
			var peer interface {
				net.Conn
				CloseWrite() error
			} = dpSide
			if tc.tls {
				// Shaken hands first: the relay sees only the
				// session's records.
				srv := tls.Server(link, pki.serverConfig())
				cc := pki.clientConfig()
				cc.ServerName = "localhost"
				cli := tls.Client(dpSide, cc)
				shaken := make(chan error, 1)
				go func() { shaken <- srv.Handshake() }()
				if err := cli.Handshake(); err != nil {
					t.Fatal(err)
				}
				if err := <-shaken; err != nil {
					t.Fatal(err)
				}
				under, peer = srv, cli
			}
			bc := newBufferedConn(under, []byte("ahead "))
			var sc *keepScanner
			var aToB relay.Scanner
			if tc.scanned {
				sc = &keepScanner{}
				aToB = sc
			}
			type result struct {
				st  relay.Stats
				err error
			}
			joined := make(chan result, 1)
			go func() {
				st, err := relay.JoinScanned(bc, local, nil, aToB, nil)
				joined <- result{st, err}
			}()
			if _, err := peer.Write([]byte("and the rest")); err != nil {
				t.Fatal(err)
			}
			peer.CloseWrite()
			const want = "ahead and the rest"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(svc, got); err != nil || string(got) != want {
				t.Fatalf("the service read %q, %v; want %q", got, err, want)
			}
			if rest, err := io.ReadAll(svc); err != nil || len(rest) > 0 {
				t.Fatalf("the service read %q more, %v; want its end", rest, err)
			}
			if bc.Unwrap() != nil {
				t.Error("Unwrap gave the relay the TCP connection")
			}
			if _, err := svc.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			svc.CloseWrite()
			if got, err := io.ReadAll(peer); err != nil || string(got) != "answer" {
				t.Fatalf("the client read %q, %v; want %q", got, err, "answer")
			}
			r := <-joined
			if r.err != nil {
				t.Fatalf("relay.JoinScanned: %v", r.err)
			}
			if r.st.AtoB != int64(len(want)) || r.st.BtoA != int64(len("answer")) {
				t.Errorf("Stats %d, %d; want %d, %d", r.st.AtoB, r.st.BtoA, len(want), len("answer"))
			}
			if sc != nil && string(sc.got) != want {
				t.Errorf("the scanner read %q; want %q", sc.got, want)
			}
			if tc.tls && bc.TakeBuffered() != nil {
				t.Error("TakeBuffered gave bytes twice")
			}
		})
	}
}

// TestDPRawClientBytesWithConnect: a raw client that sends its session's
// first bytes with its Aloha and Connect, in one write (a peer that does
// not wait for the Ack), has them delivered first, then the rest, and
// counted, whichever transport the server's link has; at the DP its
// leg is a bufferedConn whose bytes the relay takes (TakeBuffered) before
// it moves the rest between the TCP connections or into the link.
func TestDPRawClientBytesWithConnect(t *testing.T) {
	for _, tr := range []Transport{TransportTCP, TransportYamux} {
		t.Run(fmt.Sprint(tr), func(t *testing.T) {
			dp := new(DiscoverPoint)
			addr := runDP(t, dp)
			lc := ListenConfig{Transport: tr}
			l, err := lc.Listen(context.Background(), addr, "svc")
			if err != nil {
				t.Fatal(err)
			}
			serveEcho(t, l)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			first := plan5.AppendMessage(nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, N: "eager", Transport: wireRaw})
			first = plan5.AppendMessage(first, &plan5.Connect{N: "svc"})
			first = append(first, "hello, "...)
			if _, err := c.Write(first); err != nil {
				t.Fatal(err)
			}
			r := plan5.NewReader(c, plan5.DefaultMaxLine)
			if m, err := r.ReadMessage(); err != nil || m.Type() != plan5.TypeAloha {
				t.Fatalf("the DP answered %v, %v; want its Aloha", m, err)
			}
			if m, err := r.ReadMessage(); err != nil {
				t.Fatal(err)
			} else if ack, ok := m.(*plan5.Ack); !ok || ack.X < 0 {
				t.Fatalf("the DP answered the Connect with %+v; want an Ack", m)
			}
			const want = "hello, world"
			if _, err := io.WriteString(c, "world"); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(r.Buffered())
			if err != nil || string(got) != want {
				t.Fatalf("the echo read %q, %v; want %q", got, err, want)
			}
			if n := dp.counts.toServers.Load(); n != uint64(len(want)) {
				t.Errorf("the DP counted %d bytes to servers; want %d", n, len(want))
			}
		})
	}
}
