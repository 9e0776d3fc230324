package rtcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/punch"
	"rtcp/protocol/plan5"
)

// The whole path of a brokered session on loopback, without network
// namespaces: the Aloha's and the Connect's keys, the DP's offer on each
// transport's open, the punch, the records, the move. On loopback a SYN
// to a port with no socket yet is refused at once, so the simultaneous
// open alone is a race that the punch mostly lost within its deadline;
// the client also takes the server's connect on its port
// (punch.Config.Accept), so the session must move.
func TestDirectLoopback(t *testing.T) {
	for _, tr := range []Transport{TransportJSON, TransportYamux, TransportTCP} {
		for _, manual := range []bool{false, true} {
			name := tr.String()
			if manual {
				name += "/manual-ack"
			}
			t.Run(name, func(t *testing.T) {
				dp := new(DiscoverPoint)
				ended := make(chan bool, 1)
				dp.brokeredEnded = func(moved bool) { ended <- moved }
				addr := startDP(t, dp)
				events := make(chan Event, 16)
				l := listen(t, &ListenConfig{Transport: tr, Direct: true, ManualAck: manual, OnEvent: func(e Event) {
					if e.Kind == EventDirect {
						events <- e
					}
				}}, addr, "printer-7")
				echo(t, l)
				d := Dialer{Direct: true}
				c, err := d.DialContext(context.Background(), addr, "printer-7")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				rc := c.(*Conn)
				if rc.Direct() {
					t.Error("the session is direct before its punch ended")
				}
				punched(rc)
				echoCheck(t, c, 1<<20) // moves the session
				direct := rc.Direct()
				if !direct {
					t.Errorf("the session stays on the relay: %v", rc.DirectError())
				}
				if e := <-events; (e.Err == nil) != direct {
					t.Errorf("the client went direct: %v; the server's EventDirect says %v", direct, e.Err)
				}
				c.Close()
				if moved := <-ended; moved != direct {
					t.Errorf("the client went direct: %v; the DP saw the session end moved: %v", direct, moved)
				}
				// Each side's report: all of its 1 MiB went directly, as
				// both sides wrote only after their punch had ended.
				var want uint64
				if direct {
					want = 2 << 20
				}
				if st := dp.Stats(); st.DirectBrokered != 1 || st.DirectMoved+st.DirectPartly+st.DirectRelayed != 1 || st.DirectBytes != want {
					t.Errorf("Stats: %d brokered, %d moved, %d partly, %d relayed, %d direct bytes; want 1, the session counted once, %d", st.DirectBrokered, st.DirectMoved, st.DirectPartly, st.DirectRelayed, st.DirectBytes, want)
				}
			})
		}
	}
}

// punched waits for the punch of c, a client's session that may move to
// the direct path, to end (within its DirectTimeout): from then on, each
// direction moves at its next Write.
func punched(c *Conn) {
	if m, ok := c.s.(*moveConn); ok {
		<-m.punchDone
	}
}

// echoCheck writes n bytes to c, half-closes, and wants them back.
func echoCheck(t testing.TB, c net.Conn, n int) {
	t.Helper()
	msg := bytes.Repeat([]byte("direct "), n/7+1)[:n]
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*Conn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want the %d sent", len(got), len(msg))
	}
}

// A side that does not ask, or a DP that does not broker, leaves the
// session on the relay, with no error and no records.
func TestDirectNotBrokered(t *testing.T) {
	for _, tc := range []struct {
		name           string
		dp             *DiscoverPoint
		server, client bool
	}{
		{"server did not ask", &DiscoverPoint{}, false, true},
		{"client did not ask", &DiscoverPoint{}, true, false},
		{"NoDirect", &DiscoverPoint{NoDirect: true}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startDP(t, tc.dp)
			l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: tc.server}, addr, "printer-7")
			echo(t, l)
			d := Dialer{Direct: tc.client, Transport: TransportYamux}
			c, err := d.DialContext(context.Background(), addr, "printer-7")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if rc := c.(*Conn); rc.Direct() || rc.DirectError() != nil {
				t.Fatalf("Direct %v, DirectError %v; want a relayed session and no error", rc.Direct(), rc.DirectError())
			}
			echoCheck(t, c, 64<<10)
			if st := tc.dp.Stats(); st.DirectBrokered != 0 {
				t.Errorf("Stats: %d sessions brokered, want 0", st.DirectBrokered)
			}
		})
	}
}

// noPunch is a directSide whose punch fails at once.
func noPunch() *directSide {
	return &directSide{
		local:   netip.MustParseAddrPort("127.0.0.1:1"),
		timeout: time.Second,
		ns:      func(func() error) error { return punch.ErrNoPath },
	}
}

// brokered returns a server's session on one end of a pipe, brokered
// with a punch that fails, and the client's end of the relay.
func brokered(t *testing.T) (*Conn, net.Conn, chan error) {
	server, client := net.Pipe()
	t.Cleanup(func() { client.Close() })
	events := make(chan error, 1)
	cm := &plan5.Connect{N: "alice", Peer: "127.0.0.1:2", Secret: make([]byte, secretLen)}
	c := startServerPath(newConn(pipeStream{server}, nil), noPunch(), cm, func(err error) { events <- err }, nil)
	return c, client, events
}

// refusedPunch is a directSide whose punch goes on until it is stopped
// (a minute): every connect it makes is refused.
func refusedPunch(t *testing.T) (*directSide, string) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := l.Addr().String() // nothing listens there once l is closed
	l.Close()
	return &directSide{local: netip.MustParseAddrPort("127.0.0.1:0"), timeout: time.Minute}, peer
}

// TestDirectPunchStoppedSaysWhy: a punch that Close or the peer's 'u'
// stops says so, in EventDirect and DirectError, and not that there is
// no path.
func TestDirectPunchStoppedSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peerU bool // the client says 'u'; else the session is closed
		want  error
	}{
		{"closed", false, errPunchClosed},
		{"the peer's punch failed", true, errPeerUnframed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			side, peer := refusedPunch(t)
			server, client := net.Pipe()
			defer client.Close()
			events := make(chan error, 1)
			cm := &plan5.Connect{N: "alice", Peer: peer, Secret: make([]byte, secretLen)}
			c := startServerPath(newConn(pipeStream{server}, nil), side, cm, func(err error) { events <- err }, nil)
			defer c.Close()
			if tc.peerU {
				go client.Write([]byte("uhello"))
				if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
					t.Fatal(err)
				}
			} else {
				c.Close()
				// The punch may still be ending: Close stopped it all the same.
				if err := c.DirectError(); !errors.Is(err, tc.want) || !errors.Is(err, context.Canceled) {
					t.Errorf("DirectError right after Close: %v; want %v and context.Canceled", err, tc.want)
				}
			}
			err := <-events
			if !errors.Is(err, tc.want) || !errors.Is(err, context.Canceled) || errors.Is(err, punch.ErrNoPath) {
				t.Errorf("EventDirect: %v; want %v and context.Canceled, not punch.ErrNoPath", err, tc.want)
			}
			if err := c.DirectError(); !errors.Is(err, tc.want) || !errors.Is(err, context.Canceled) || errors.Is(err, punch.ErrNoPath) {
				t.Errorf("DirectError: %v; want %v and context.Canceled, not punch.ErrNoPath", err, tc.want)
			}
		})
	}
}

// TestDirectPunchStoppedByPeerThenClosed: the peer's 'u' stops the
// punch, and the session is closed before the punch has returned (its
// connect still under way): DirectError says the peer's punch failed, as
// EventDirect does, not that Close stopped it.
func TestDirectPunchStoppedByPeerThenClosed(t *testing.T) {
	side, peer := refusedPunch(t)
	release := make(chan struct{})
	side.ns = func(func() error) error {
		<-release // the connect, held until the test has closed the session
		return syscall.ECONNREFUSED
	}
	server, client := net.Pipe()
	defer client.Close()
	events := make(chan error, 1)
	cm := &plan5.Connect{N: "alice", Peer: peer, Secret: make([]byte, secretLen)}
	c := startServerPath(newConn(pipeStream{server}, nil), side, cm, func(err error) { events <- err }, nil)
	go client.Write([]byte("uhello"))
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	derr := c.DirectError()
	close(release)
	err := <-events
	if !errors.Is(err, errPeerUnframed) {
		t.Errorf("EventDirect: %v; want %v", err, errPeerUnframed)
	}
	if !errors.Is(derr, errPeerUnframed) || !errors.Is(derr, context.Canceled) || errors.Is(derr, errPunchClosed) {
		t.Errorf("DirectError after Close: %v; want %v and context.Canceled, as EventDirect says", derr, errPeerUnframed)
	}
	if derr := c.DirectError(); !errors.Is(derr, errPeerUnframed) {
		t.Errorf("DirectError once the punch has ended: %v; want %v", derr, errPeerUnframed)
	}
}

// pipeStream is a net.Pipe end as a stream.
type pipeStream struct{ net.Conn }

func (pipeStream) CloseWrite() error { return ErrNoHalfClose }

// A server's brokered session is a moving session from its first byte:
// no marker comes first. A client whose punch failed says 'u' and writes
// on as it is; one that moved when this side's punch failed fails the
// session loudly.
func TestDirectServerSession(t *testing.T) {
	t.Run("unframed", func(t *testing.T) {
		c, client, events := brokered(t)
		defer c.Close()
		go client.Write([]byte("d\x00\x02heullo"))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v; want the session's bytes", buf, err)
		}
		if err := <-events; err == nil { // once this side's punch has failed
			t.Error("EventDirect without an error for a relayed session")
		}
		if c.Direct() || c.DirectError() == nil {
			t.Errorf("Direct %v, DirectError %v: want relayed, with the punch's error", c.Direct(), c.DirectError())
		}
	})
	t.Run("unframed, on TCP, closes once", func(t *testing.T) {
		// A session that stayed on its relay closes it once: Close
		// reports no error of a second close.
		server, client := tcpPair(t)
		cm := &plan5.Connect{N: "alice", Peer: "127.0.0.1:2", Secret: make([]byte, secretLen)}
		c := startServerPath(newConn(&rawConn{Conn: server}, nil), noPunch(), cm, nil, nil)
		go client.Write([]byte("uhello"))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v; want the bytes after the record", buf, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close of a session that stayed on its relay: %v", err)
		}
	})
	t.Run("moved with the punch failed", func(t *testing.T) {
		c, client, events := brokered(t)
		defer c.Close()
		go client.Write([]byte("m"))
		n, err := c.Read(make([]byte, 8))
		if n != 0 || err == nil || err == io.EOF {
			t.Fatalf("Read: %d, %v; want an error other than io.EOF", n, err)
		}
		if !errors.Is(err, punch.ErrNoPath) || !errors.Is(err, errMovedNoDirect) {
			t.Errorf("Read: %v; want errMovedNoDirect and the punch's error in it", err)
		}
		if err := <-events; err == nil {
			t.Error("EventDirect without an error for a failed session")
		}
	})
	t.Run("ended before a record", func(t *testing.T) {
		c, client, _ := brokered(t)
		defer c.Close()
		client.Close()
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read: %d, %v; want the clean end of an empty session", n, err)
		}
	})
	t.Run("bad record", func(t *testing.T) {
		c, client, _ := brokered(t)
		defer c.Close()
		go client.Write([]byte("GET /"))
		if _, err := c.Read(make([]byte, 8)); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("Read: %v; want an error other than io.EOF", err)
		}
	})
	t.Run("closed at once", func(t *testing.T) {
		c, _, _ := brokered(t)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("Read after Close succeeded")
		}
	})
}

// TestDirectLoopbackJoin: sessions carried as rtcp connect and rtcp
// expose carry them (Join between the session and a TCP connection on
// each side: chunks written with Write, read with WriteTo, the end passed
// on with CloseWrite), one after another on one server link, move to the
// direct path on loopback once both punches have ended, every time.
func TestDirectLoopbackJoin(t *testing.T) {
	for _, tr := range []Transport{TransportYamux, TransportTCP} {
		t.Run(tr.String(), func(t *testing.T) {
			dp := new(DiscoverPoint)
			ended := make(chan bool, 1)
			dp.brokeredEnded = func(moved bool) { ended <- moved }
			addr := startDP(t, dp)
			service := tcpEchoServer(t)

			// expose: each session joined to a connection to the service.
			l := listen(t, &ListenConfig{Transport: tr, Direct: true, ManualAck: true}, addr, "printer-7")
			servers := make(chan *Conn, 1)
			var wg sync.WaitGroup
			defer wg.Wait()
			defer l.Close()
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					out, err := net.Dial("tcp", service)
					if err != nil {
						c.Close()
						continue
					}
					c.(*Conn).Ack(nil)
					servers <- c.(*Conn)
					wg.Go(func() { Join(c, out) })
				}
			})

			// connect: each local connection joined to a session.
			ll, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ll.Close()
			clients := make(chan *Conn, 1)
			wg.Go(func() {
				d := Dialer{Direct: true}
				for {
					app, err := ll.Accept()
					if err != nil {
						return
					}
					c, err := d.DialContext(context.Background(), addr, "printer-7")
					if err != nil {
						app.Close()
						clients <- nil
						continue
					}
					clients <- c.(*Conn)
					wg.Go(func() { Join(app, c) })
				}
			})

			for i := range 10 {
				app, err := net.Dial("tcp", ll.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c := <-clients
				if c == nil {
					t.Fatalf("session %d: the dial failed", i)
				}
				sc := <-servers
				punched(c)
				punched(sc)
				msg := bytes.Repeat([]byte{byte(i)}, 1<<20)
				errc := make(chan error, 1)
				go func() {
					_, err := app.Write(msg)
					if err == nil {
						err = app.(*net.TCPConn).CloseWrite()
					}
					errc <- err
				}()
				got, err := io.ReadAll(app)
				if werr := <-errc; werr != nil {
					t.Fatalf("session %d: write: %v", i, werr)
				}
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("session %d: read %d bytes, %v; want the %d sent back", i, len(got), err, len(msg))
				}
				app.Close()
				if moved := <-ended; !moved {
					t.Errorf("session %d stays on the relay: the client's punch: %v; the server's: %v", i, c.DirectError(), sc.DirectError())
				}
			}
		})
	}
}

// localsDialer returns a Dialer with Direct whose connections to the DP
// are made as the punch needs them (dpControl), each one's local address
// sent to locals.
func localsDialer(locals chan<- netip.AddrPort) Dialer {
	return Dialer{Direct: true, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: dpControl}
		c, err := nd.DialContext(ctx, network, addr)
		if err == nil {
			locals <- localAddrPort(c)
		}
		return c, err
	}}
}

// tcpEchoServer is a plain TCP echo service on loopback, which passes
// the end of what it reads on as a half-close, until the test ends.
func tcpEchoServer(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flowtest.ServeEach(t, l, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	return l.Addr().String()
}

// TestDirectClientListenerClosed: the client's punch listener, made once
// its Connect is out, is closed on every way out: an Ack that does not
// broker (at once, while the session runs), a refused Connect, one that
// the server refuses after the DP's early offer started the punch, a dial
// cancelled while it waits for its Ack, and a punch that ended. Each
// case then wants a connect to the client's port toward the DP refused.
func TestDirectClientListenerClosed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   bool // the server asks for direct sessions
		manual   bool // the server never answers (ManualAck, no Accept)
		refuse   bool // with manual: the server refuses each session
		exposed  bool
		wantDial bool // the dial succeeds
	}{
		{name: "not brokered", exposed: true, wantDial: true},
		{name: "refused", server: true},
		{name: "refused after the offer", server: true, manual: true, refuse: true, exposed: true},
		{name: "cancelled", server: true, manual: true, exposed: true},
		{name: "punched", server: true, exposed: true, wantDial: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startDP(t, new(DiscoverPoint))
			if tc.exposed {
				l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: tc.server, ManualAck: tc.manual}, addr, "printer-7")
				if !tc.manual {
					echo(t, l)
				}
				if tc.refuse {
					go func() {
						for {
							c, err := l.Accept()
							if err != nil {
								return
							}
							c.(*Conn).Ack(errors.New("no"))
						}
					}()
				}
			}
			locals := make(chan netip.AddrPort, 1)
			d := localsDialer(locals)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.manual && !tc.refuse {
				ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
			}
			c, err := d.DialContext(ctx, addr, "printer-7")
			if (err == nil) != tc.wantDial {
				t.Fatalf("dial: %v", err)
			}
			local := <-locals
			if c != nil {
				defer c.Close()
				rc := c.(*Conn)
				if tc.server {
					punched(rc)
					echoCheck(t, c, 64<<10)
					if !rc.Direct() {
						t.Errorf("the session stays on the relay: %v", rc.DirectError())
					}
				}
			}
			// The session (if any) still holds the port: only a
			// listener would take this connect.
			if pc, err := net.Dial("tcp", local.String()); err == nil {
				pc.Close()
				t.Fatalf("a connect to the client's port %v was taken: its punch listener is still open", local)
			}
		})
	}
}

// TestDirectClientListensBeforeAck: the client's punch listener is up
// while its dial waits for the DP's answer (the server's punch starts at
// the open, before the client has its Ack), not only once the answer
// came: a connect to the client's port toward the DP is taken by the
// kernel before the server has answered. (Unless the Dialer's last dial
// found the DP near: TestDirectClientNearListensLate.)
func TestDirectClientListensBeforeAck(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	// A ManualAck server that never accepts: the DP's answer never comes.
	// It does not take part, so no early offer starts a punch that
	// would take the listener over, prove a path and close it.
	listen(t, &ListenConfig{Transport: TransportYamux, ManualAck: true}, addr, "printer-7")
	locals := make(chan netip.AddrPort, 1)
	listened := make(chan error, 1)
	d := localsDialer(locals)
	// With Dial set, netns runs only the punch's listen (and dials).
	d.netns = func(f func() error) error {
		err := f()
		select {
		case listened <- err:
		default:
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := d.DialContext(ctx, addr, "printer-7")
		if c != nil {
			c.Close()
		}
		dialed <- err
	}()
	local := <-locals
	select {
	case err := <-listened:
		if err != nil {
			t.Fatalf("the punch's listener: %v", err)
		}
	case err := <-dialed:
		t.Fatalf("the dial ended before the server answered: %v", err)
	case <-time.After(2 * time.Second): // a failure's bound, not a wait for success
		t.Fatal("no listener on the client's port while its dial waited for the DP's answer")
	}
	pc, err := net.Dial("tcp", local.String())
	if err != nil {
		t.Errorf("a connect to the client's port while its dial waits: %v; want it taken", err)
	} else {
		pc.Close()
	}
	cancel()
	if err := <-dialed; err == nil {
		t.Error("the dial succeeded with no answer from the server")
	}
}
