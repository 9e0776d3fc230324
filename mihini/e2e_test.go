package mihini

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"rtcp"
)

// pair runs a Server and a Device on loopback, linked, and returns the
// server and the device's end of the link (to cut it).
func pair(t *testing.T, srv *Server, d *Device) (devLink <-chan net.Conn, run *running) {
	t.Helper()
	devAddr, up := startServer(t, srv)
	links := make(chan net.Conn, 8)
	d.Server = devAddr
	d.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, network, addr)
		if err == nil {
			links <- c
		}
		return c, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	run = &running{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = d.DialAndServe(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-run.done
	})
	wait(t, up, "device link")
	return links, run
}

// TestEndToEnd carries several clients at once through the server side
// and the device side to an echo service, each with messages from one
// byte to more than a DATA frame holds.
func TestEndToEnd(t *testing.T) {
	echo, _ := startEcho(t)
	srv := new(Server)
	pair(t, srv, &Device{})
	clients := startClients(t, srv, echo)

	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", clients)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for _, size := range []int{1, 1000, 70000, 200000} {
				if err := echoOnce(c, pattern(size, i)); err != nil {
					t.Errorf("client %d, %d bytes: %v", i, size, err)
					return
				}
			}
		})
	}
	wg.Wait()

	// The library path: a client of the service through DialContext.
	c, err := srv.DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoOnce(c, []byte("through DialContext")); err != nil {
		t.Error(err)
	}
}

// TestEndToEndServiceCloses checks that a service that ends the session
// closes the client after its last bytes.
func TestEndToEndServiceCloses(t *testing.T) {
	srv := new(Server)
	pair(t, srv, &Device{})
	clients := startClients(t, srv, startGreeter(t, "bye"))
	c := dial(t, clients)
	c.SetDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Errorf("client read %q, %v; want \"bye\" and EOF", got, err)
	}
}

// TestEndToEndLinkLoss cuts the device link under open sessions: every
// client and every service connection is cut off with an error, and a
// device that reconnects carries new clients.
func TestEndToEndLinkLoss(t *testing.T) {
	echo, ends := startEcho(t)
	srv := new(Server)
	srv.init()
	d := &Device{Reconnect: true, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	links, _ := pair(t, srv, d)
	up := make(chan struct{}, 1)
	srv.ls.ready = func() { up <- struct{}{} }
	clients := startClients(t, srv, echo)

	var cs []net.Conn
	for i := range 3 {
		c := dial(t, clients)
		if err := echoOnce(c, []byte(fmt.Sprint("client ", i))); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	link := <-links
	link.Close()
	for i, c := range cs {
		if err := expectEnd(t, c, fmt.Sprint("client ", i)); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("client %d ended with %v when the link dropped; want an error", i, err)
		}
	}
	for range cs {
		select {
		case err := <-ends:
			if err == nil {
				t.Error("a service connection ended cleanly when the link dropped; want a reset")
			}
		case <-time.After(time.Minute):
			t.Fatal("a service connection is still open a minute after the link dropped")
		}
	}

	wait(t, up, "the device's new link")
	c := dial(t, clients)
	if err := echoOnce(c, []byte("after reconnecting")); err != nil {
		t.Error(err)
	}
}

// TestDoor reaches the service behind a Mihini device by name through a
// DiscoverPoint, with rtcp.Dial and in port mode.
func TestDoor(t *testing.T) {
	echo, _ := startEcho(t)
	dp := new(rtcp.DiscoverPoint)
	dpl := listen(t)
	dpDone := make(chan error, 1)
	go func() { dpDone <- dp.Serve(dpl) }()
	defer func() {
		dp.Close()
		<-dpDone
	}()
	portl := listen(t)
	portDone := make(chan error, 1)
	go func() { portDone <- dp.ServePort(portl, "plc-7") }()
	defer func() { dp.Close(); <-portDone }()

	door := &Door{DP: dp, Name: "plc-7", Service: echo}
	door.init()
	up, gone := make(chan struct{}, 1), make(chan struct{}, 1)
	door.ls.ready = func() { up <- struct{}{} }
	door.ls.gone = func() { gone <- struct{}{} }
	dl := listen(t)
	doorDone := make(chan error, 1)
	go func() { doorDone <- door.Serve(dl) }()
	defer func() {
		door.Close()
		if err := <-doorDone; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Door.Serve = %v, want ErrServerClosed", err)
		}
	}()

	if _, err := rtcp.Dial(dpl.Addr().String(), "plc-7"); err == nil {
		t.Fatal("rtcp.Dial reached plc-7 before its device connected")
	}

	ctx, cancel := context.WithCancel(context.Background())
	devDone := make(chan error, 1)
	go func() { devDone <- (&Device{Server: dl.Addr().String()}).DialAndServe(ctx) }()
	defer func() { cancel(); <-devDone }()
	wait(t, up, "registration of the device")

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c, err := rtcp.Dial(dpl.Addr().String(), "plc-7")
			if err != nil {
				t.Errorf("rtcp.Dial: %v", err)
				return
			}
			defer c.Close()
			if err := echoOnce(c, pattern(50000, i)); err != nil {
				t.Errorf("through rtcp.Dial: %v", err)
			}
		})
		wg.Go(func() {
			c, err := net.Dial("tcp", portl.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if err := echoOnce(c, pattern(50000, i+100)); err != nil {
				t.Errorf("through port mode: %v", err)
			}
		})
	}
	wg.Wait()

	// The device leaves: the name is withdrawn.
	cancel()
	<-devDone
	devDone <- nil
	<-gone
	if c, err := rtcp.Dial(dpl.Addr().String(), "plc-7"); err == nil {
		c.Close()
		t.Error("rtcp.Dial reached plc-7 after its device left")
	}
}

// TestDoorConfig checks the errors of a Door that is not set up.
func TestDoorConfig(t *testing.T) {
	dp := new(rtcp.DiscoverPoint)
	defer dp.Close()
	for _, d := range []*Door{
		{Name: "x", Service: "127.0.0.1:1"},
		{DP: dp, Service: "127.0.0.1:1"},
		{DP: dp, Name: "x"},
		{DP: dp, Name: "x", Service: "nohost"},
	} {
		if err := d.ListenAndServe("127.0.0.1:0"); err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("%+v: ListenAndServe = %v, want a configuration error", d, err)
		}
	}
}
