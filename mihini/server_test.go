package mihini

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	wire "rtcp/protocol/mihini"
)

// startServer runs srv's device side on loopback. up receives a value
// each time a device link is ready for clients.
func startServer(t *testing.T, srv *Server) (addr string, up <-chan struct{}) {
	t.Helper()
	srv.init()
	ch := make(chan struct{}, 16)
	srv.ls.ready = func() { ch <- struct{}{} }
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String(), ch
}

// startClients runs srv's client port for service on loopback.
func startClients(t *testing.T, srv *Server, service string) string {
	t.Helper()
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeClients(l, service) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeClients returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute", what)
	}
}

// TestServerWire plays the device by hand and checks every byte the server
// side puts on the link against the frames SEEDS.md describes, CONNECT as
// observed on a real peer.
func TestServerWire(t *testing.T) {
	srv := new(Server)
	devAddr, up := startServer(t, srv)
	clients := startClients(t, srv, "127.0.0.1:47002")

	dev := dial(t, devAddr)
	dev.Write(unhex("00 00 04 00")) // LISTEN
	wait(t, up, "device link")

	c1 := dial(t, clients)
	expectBytes(t, dev, unhex("00 0d 01 01 00 09 31 32 37 2e 30 2e 30 2e 31 b7 9a"), "CONNECT for client 1 (observed bytes)")
	c1.Write([]byte("hi"))
	expectBytes(t, dev, unhex("00 02 03 01 68 69"), "DATA from client 1")
	dev.Write(frame(wire.Data, 1, []byte("hello")))
	expectBytes(t, c1, []byte("hello"), "client 1 reading DATA")

	c2 := dial(t, clients)
	expectBytes(t, dev, unhex("00 0d 01 02 00 09 31 32 37 2e 30 2e 30 2e 31 b7 9a"), "CONNECT for client 2")

	// The device ends session 1: the client is closed and the server
	// answers CLOSE.
	dev.Write(unhex("00 00 02 01"))
	if err := expectEnd(t, c1, "client 1 after the device's CLOSE"); err != nil {
		t.Errorf("client 1 ended with %v, want a clean EOF", err)
	}
	expectBytes(t, dev, unhex("00 00 02 01"), "the server's answer to CLOSE 1")

	// The client ends session 2: CLOSE goes to the device, and the
	// device's answer is not answered again.
	c2.Close()
	expectBytes(t, dev, unhex("00 00 02 02"), "CLOSE for client 2")
	dev.Write(unhex("00 00 02 02"))

	// Ids go on from the last one, not back to a free low one. DATA for
	// a client the server does not know is skipped with its payload.
	c3 := dial(t, clients)
	expectBytes(t, dev, unhex("00 0d 01 03 00 09 31 32 37 2e 30 2e 30 2e 31 b7 9a"), "CONNECT for client 3")
	dev.Write(append(frame(wire.Data, 9, []byte("not yours")), frame(wire.Data, 3, []byte("x"))...))
	expectBytes(t, c3, []byte("x"), "client 3 after DATA for an unknown client")
	c3.Write(pattern(70000, 3))
	dev.SetReadDeadline(time.Now().Add(time.Minute))
	r := wire.NewReader(dev)
	var got []byte
	for len(got) < 70000 {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("reading client 3's DATA: %v", err)
		}
		if f.Command != wire.Data || f.Client != 3 || len(f.Payload) == 0 {
			t.Fatalf("got %v, want DATA for client 3", f)
		}
		got = append(got, f.Payload...)
	}
	if string(got) != string(pattern(70000, 3)) {
		t.Fatal("client 3's 70000 bytes arrived changed")
	}

	// The link drops: the client is cut off with an error, not an EOF.
	dev.Close()
	if err := expectEnd(t, c3, "client 3 after the link dropped"); err == nil {
		t.Error("client 3 read a clean EOF when the device link dropped; want an error")
	}
}

// TestServerWantsListen checks that a device must begin with LISTEN.
func TestServerWantsListen(t *testing.T) {
	tests := []struct {
		name  string
		first []byte
	}{
		{"DATA", unhex("00 01 03 01 78")},
		{"LISTEN with a client id", unhex("00 00 04 01")},
		{"LISTEN with a payload", unhex("00 01 04 00 00")},
		{"nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{HandshakeTimeout: 100 * time.Millisecond}
			devAddr, up := startServer(t, srv)
			dev := dial(t, devAddr)
			dev.Write(tt.first)
			expectEnd(t, dev, "a link that began without LISTEN")
			select {
			case <-up:
				t.Fatal("the server took the link")
			default:
			}
			if _, err := srv.DialContext(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, ErrNoDevice) {
				t.Errorf("DialContext = %v, want ErrNoDevice", err)
			}
		})
	}
}

// TestServerNewDeviceReplacesOld checks that a device that dials again
// takes over from its old link, which is closed with its clients.
func TestServerNewDeviceReplacesOld(t *testing.T) {
	srv := new(Server)
	devAddr, up := startServer(t, srv)
	clients := startClients(t, srv, "127.0.0.1:80")
	old := dial(t, devAddr)
	old.Write(unhex("00 00 04 00"))
	wait(t, up, "first link")
	c1 := dial(t, clients)
	expectBytes(t, old, connectFrame(1, "127.0.0.1", 80), "CONNECT on the first link")

	dev := dial(t, devAddr)
	dev.Write(unhex("00 00 04 00"))
	wait(t, up, "second link")
	expectEnd(t, old, "the replaced link")
	if err := expectEnd(t, c1, "a client of the replaced link"); err == nil {
		t.Error("the client of the replaced link read a clean EOF; want an error")
	}
	dial(t, clients)
	expectBytes(t, dev, connectFrame(1, "127.0.0.1", 80), "CONNECT on the new link starts again at 1")
}

// TestServerDialContext checks the library path and its errors.
func TestServerDialContext(t *testing.T) {
	srv := new(Server)
	devAddr, up := startServer(t, srv)
	ctx := context.Background()
	if _, err := srv.DialContext(ctx, "udp", "127.0.0.1:53"); err == nil {
		t.Error("DialContext over udp succeeded")
	}
	for _, bad := range []string{"127.0.0.1", ":80", "127.0.0.1:0", "127.0.0.1:http", "h:70000"} {
		if _, err := srv.DialContext(ctx, "tcp", bad); err == nil {
			t.Errorf("DialContext(%q) succeeded", bad)
		}
	}
	dev := dial(t, devAddr)
	dev.Write(unhex("00 00 04 00"))
	wait(t, up, "device link")
	c, err := srv.DialContext(ctx, "tcp", "[::1]:22")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectBytes(t, dev, connectFrame(1, "::1", 22), "CONNECT for an IPv6 service")
	srv.Close()
	if _, err := srv.DialContext(ctx, "tcp", "127.0.0.1:22"); !errors.Is(err, ErrServerClosed) {
		t.Errorf("DialContext after Close = %v, want ErrServerClosed", err)
	}
}
