package tcpipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/mux"
	wire "rtcp/protocol/tcpipe"
)

// startServer runs s on a loopback partner port; up receives a value
// whenever a partner link is ready.
func startServer(t *testing.T, s *Server, addr string) (partnerAddr string, up <-chan struct{}) {
	t.Helper()
	s.init()
	ch := make(chan struct{}, 16)
	s.in.ready = func() { ch <- struct{}{} }
	l := listenOn(t, addr)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String(), ch
}

// TestServerWire plays the client instance by hand and checks the bytes
// the server instance puts on the partner link, built from SPEC.md's
// layout: magic 21 and size big-endian, the port little-endian, the local
// flag from the receiver's view.
func TestServerWire(t *testing.T) {
	echo, echoEnds := startEcho(t, "127.0.0.3:0")
	refused := freePort(t, "127.0.0.3")
	p := freePort(t, "127.0.0.2")
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Target: "127.0.0.3", TargetPorts: []uint16{echo, refused},
		Quiet: time.Millisecond, Logger: testLogger(t)}
	free := make(chan uint16, 16)
	srv.init()
	srv.in.released = func(port uint16) { free <- port }
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	partner := dial(t, partnerAddr)
	wait(t, up, "partner link")
	waitFree := func() {
		t.Helper()
		select {
		case <-free:
		case <-time.After(time.Minute):
			t.Fatal("the port does not accept again")
		}
	}

	// A user application connects: Connect, local 0.
	user := dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, partner, wireFrame(1, 0, p, nil), "Connect for the user's port")
	user.Write([]byte("hello"))
	expectBytes(t, partner, wireFrame(0, 0, p, []byte("hello")), "Data from the accepted connection, local 0")
	partner.Write(wireFrame(0, 1, p, []byte("hi")))
	user.SetReadDeadline(time.Now().Add(time.Minute))
	got := make([]byte, 2)
	if _, err := io.ReadFull(user, got); err != nil || string(got) != "hi" {
		t.Fatalf("user read %q, %v; want \"hi\"", got, err)
	}

	// One connection per port: a second one is closed at once.
	second := dial(t, hostPort("127.0.0.2", p))
	expectEnd(t, second, "a second user on a busy port")

	// Data for a connection that is not open is dropped, not answered.
	partner.Write(wireFrame(0, 0, p, []byte("no such made connection")))

	// The partner's side ends: the user's connection is closed.
	partner.Write(wireFrame(2, 1, p, nil))
	if err := expectEnd(t, user, "the user after Disconnect"); err != nil {
		t.Errorf("user ended with %v, want a clean EOF", err)
	}

	// The partner's user connects on the echo's port: the server connects
	// to its target, and answers with local 1 (our made connection is the
	// partner's accepted one).
	partner.Write(wireFrame(1, 0, echo, nil))
	partner.Write(wireFrame(0, 0, echo, []byte("ping")))
	expectBytes(t, partner, wireFrame(0, 1, echo, []byte("ping")), "the echo, local 1")
	partner.Write(wireFrame(2, 0, echo, nil))
	if err := <-echoEnds; err != nil {
		t.Errorf("the target's connection ended with %v, want a clean end", err)
	}

	// A target that refuses: Disconnect, local 1.
	partner.Write(wireFrame(1, 0, refused, nil))
	expectBytes(t, partner, wireFrame(2, 1, refused, nil), "Disconnect for a refused Connect")

	// Data longer than a frame is split into frames of at most 1024.
	waitFree()
	user = dial(t, hostPort("127.0.0.2", p))
	expectBytes(t, partner, wireFrame(1, 0, p, nil), "Connect for a new user on the port")
	big := pattern(3000, 1)
	user.Write(big)
	r := wire.NewReader(partner)
	var all []byte
	for len(all) < len(big) {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind != wire.Data || f.Local || f.Port != p || len(f.Data) > wire.MaxData {
			t.Fatalf("got %v, want Data for port %d of at most %d bytes", f, p, wire.MaxData)
		}
		all = append(all, f.Data...)
	}
	if !bytes.Equal(all, big) {
		t.Fatal("the user's 3000 bytes arrived changed")
	}
	// The user leaves: Disconnect, local 0.
	user.Close()
	if f, err := r.ReadFrame(); err != nil || f.Kind != wire.Disconnect || f.Local || f.Port != p {
		t.Fatalf("after the user closed: %v, %v; want Disconnect port %d remote", f, err, p)
	}

	// Losing the partner closes every user connection.
	waitFree()
	user = dial(t, hostPort("127.0.0.2", p))
	if f, err := r.ReadFrame(); err != nil || f.Kind != wire.Connect {
		t.Fatalf("got %v, %v; want Connect", f, err)
	}
	partner.Close()
	if err := expectEnd(t, user, "a user when the partner left"); err == nil {
		t.Error("the user read a clean EOF when the partner link dropped; want an error")
	}
}

// TestServerBadPartner checks that a wrong magic ends the link.
func TestServerBadPartner(t *testing.T) {
	srv := &Server{}
	partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
	partner := dial(t, partnerAddr)
	wait(t, up, "partner link")
	partner.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	expectEnd(t, partner, "a link with a wrong magic")
}

// TestFramerGolden checks the frames of every event of SPEC.md's table,
// for port 40000, against the bytes written there.
func TestFramerGolden(t *testing.T) {
	var out bytes.Buffer
	fr := newFramer(bytes.NewReader(nil), &out)
	steps := []struct {
		f    mux.Frame
		want string
	}{
		{mux.Frame{Kind: mux.KindOpen, ID: 40000, Addr: "40000"}, "00 00 00 15 00 00 00 04 01 00 40 9c"},
		{mux.Frame{Kind: mux.KindData, ID: 40000, Data: []byte("hello")}, "00 00 00 15 00 00 00 09 00 00 40 9c 68 65 6c 6c 6f"},
		{mux.Frame{Kind: mux.KindClose, ID: 40000}, "00 00 00 15 00 00 00 04 02 00 40 9c"},
		{mux.Frame{Kind: mux.KindClose, ID: 40000}, ""}, // at most one Disconnect
		{mux.Frame{Kind: mux.KindData, ID: 40000, Data: []byte("late")}, ""},
	}
	for _, s := range steps {
		out.Reset()
		if err := fr.WriteFrame(&s.f); err != nil {
			t.Fatal(err)
		}
		fr.Flush()
		if got := hexOf(out.Bytes()); got != s.want {
			t.Errorf("%v %d: wrote %q, want %q", s.f.Kind, s.f.ID, got, s.want)
		}
	}
	// The made connection of the partner's Connect on 40001.
	in := wireFrame(1, 0, 40001, nil)
	fr = newFramer(bytes.NewReader(in), &out)
	f, err := fr.ReadFrame()
	if err != nil || f.Kind != mux.KindOpen || f.ID != peerBase+40001 {
		t.Fatalf("ReadFrame = %+v, %v", f, err)
	}
	out.Reset()
	fr.WriteFrame(&mux.Frame{Kind: mux.KindData, ID: peerBase + 40001, Data: []byte("x")})
	fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: peerBase + 40001})
	fr.Flush()
	if got, want := hexOf(out.Bytes()), "00 00 00 15 00 00 00 05 00 01 41 9c 78 00 00 00 15 00 00 00 04 02 01 41 9c"; got != want {
		t.Errorf("made connection's Data and Disconnect:\n got %s\nwant %s", got, want)
	}
}

func hexOf(b []byte) string {
	var s []byte
	for i, c := range b {
		if i > 0 {
			s = append(s, ' ')
		}
		s = append(s, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
	}
	return string(s)
}

var _ net.Conn = (*mux.Stream)(nil)

// TestConnectPortNotAllowed checks that a partner cannot reach a port of
// the target outside TargetPorts (by default Ports): the server answers
// Disconnect, as for a refused target, logs why, and connects to nothing.
func TestConnectPortNotAllowed(t *testing.T) {
	target := listenOn(t, "127.0.0.3:0")
	secret := portOf(t, target.Addr()) // a service nobody listed
	listed, _ := startEcho(t, "127.0.0.3:0")
	tests := []struct {
		name               string
		ports, targetPorts []uint16
	}{
		{"Ports", []uint16{listed}, nil},
		{"TargetPorts", []uint16{freePort(t, "127.0.0.2")}, []uint16{listed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, logger := flowtest.NewLogs()
			srv := &Server{Ports: tt.ports, TargetPorts: tt.targetPorts, Bind: "127.0.0.2", Target: "127.0.0.3", Logger: logger}
			partnerAddr, up := startServer(t, srv, "127.0.0.2:0")
			partner := dial(t, partnerAddr)
			wait(t, up, "partner link")

			accepted := make(chan net.Conn, 1)
			go func() {
				if c, err := target.Accept(); err == nil {
					accepted <- c
				}
			}()
			partner.Write(wireFrame(1, 0, secret, nil))
			answered := make(chan error, 1)
			go func() {
				got := make([]byte, len(wireFrame(2, 1, secret, nil)))
				partner.SetReadDeadline(time.Now().Add(time.Minute))
				_, err := io.ReadFull(partner, got)
				if err == nil && !bytes.Equal(got, wireFrame(2, 1, secret, nil)) {
					err = fmt.Errorf("got % x, want Disconnect local 1 for port %d", got, secret)
				}
				answered <- err
			}()
			select {
			case c := <-accepted:
				c.Close()
				t.Fatalf("the server connected to port %d of the target, which is not in its ports", secret)
			case err := <-answered:
				if err != nil {
					t.Fatal(err)
				}
			}
			target.(*net.TCPListener).SetDeadline(time.Now())
			if c, err := target.Accept(); err == nil {
				c.Close()
				t.Fatalf("the server connected to port %d of the target, which is not in its ports", secret)
			}
			// The deadline also ended the Accept above: the next subtest
			// starts its own.
			target.(*net.TCPListener).SetDeadline(time.Time{})
			warned := logs.Find(slog.LevelWarn, "tcpipe: the partner asked for a port of the target that is not allowed; answering Disconnect (allow it in TargetPorts, rtcp tcpipe -target-ports; by default the ports are -p's)")
			if len(warned) != 1 || warned[0].Attrs["target"] != hostPort("127.0.0.3", secret) {
				t.Errorf("logged %v; want one warning naming the target %s", warned, hostPort("127.0.0.3", secret))
			}

			// A listed port is reached.
			partner.Write(wireFrame(1, 0, listed, nil))
			partner.Write(wireFrame(0, 0, listed, []byte("ping")))
			expectBytes(t, partner, wireFrame(0, 1, listed, []byte("ping")), "the echo of the listed port")
			partner.Write(wireFrame(2, 0, listed, nil))
		})
	}
}
