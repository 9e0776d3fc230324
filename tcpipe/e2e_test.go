package tcpipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// startClient runs c until the test ends; up receives a value whenever its
// link to the server is ready.
func startClient(t *testing.T, c *Client) <-chan struct{} {
	t.Helper()
	up := make(chan struct{}, 16)
	c.in.ready = func() { up <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.DialAndServe(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("DialAndServe returned %v, want context.Canceled", err)
		}
	})
	return up
}

// TestTwoInstances runs a server instance bound to 127.0.0.2 and a client
// instance bound to 127.0.0.3, each accepting on the same two ports and
// each with its target on 127.0.0.4, and carries four connections at once:
// both ports, both ways (so each port carries an accepted and a made
// connection at each instance at the same time).
func TestTwoInstances(t *testing.T) {
	p1, _ := startEcho(t, "127.0.0.4:0")
	p2, _ := startEcho(t, "127.0.0.4:0")
	ports := []uint16{p1, p2}
	srv := &Server{Ports: ports, Bind: "127.0.0.2", Target: "127.0.0.4"}
	partnerAddr, srvUp := startServer(t, srv, "127.0.0.2:0")
	cl := &Client{Server: partnerAddr, Ports: ports, Bind: "127.0.0.3", Target: "127.0.0.4"}
	clUp := startClient(t, cl)
	wait(t, srvUp, "the server's partner link")
	wait(t, clUp, "the client's partner link")

	var wg sync.WaitGroup
	for _, host := range []string{"127.0.0.2", "127.0.0.3"} {
		for i, p := range ports {
			wg.Go(func() {
				c, err := net.Dial("tcp", hostPort(host, p))
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for _, size := range []int{1, 1024, 1025, 100000} {
					if err := echoOnce(c, pattern(size, i)); err != nil {
						t.Errorf("%s:%d, %d bytes: %v", host, p, size, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestPartnerRestart stops the server instance under open connections and
// starts it again on the same address: the users are cut off, the client
// dials again, and new users get through.
func TestPartnerRestart(t *testing.T) {
	p, _ := startEcho(t, "127.0.0.4:0")
	l := listenOn(t, "127.0.0.2:0")
	partnerAddr := l.Addr().String()
	l.Close()

	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2"}
	srv.init()
	srvUp := make(chan struct{}, 4)
	srv.in.ready = func() { srvUp <- struct{}{} }
	serve := func(s *Server) chan error {
		l, err := net.Listen("tcp", partnerAddr)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		return done
	}
	done := serve(srv)
	cl := &Client{Server: partnerAddr, Target: "127.0.0.4", MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	clUp := startClient(t, cl)
	wait(t, srvUp, "the first link")
	wait(t, clUp, "the first link at the client")

	user := dial(t, hostPort("127.0.0.2", p))
	if err := echoOnce(user, []byte("before")); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if err := expectEnd(t, user, "a user of the stopped server"); err == nil {
		t.Error("the user read a clean EOF when its instance stopped; want an error")
	}

	srv2 := &Server{Ports: []uint16{p}, Bind: "127.0.0.2"}
	srv2.init()
	srv2.in.ready = func() { srvUp <- struct{}{} }
	done = serve(srv2)
	defer func() {
		srv2.Close()
		<-done
	}()
	wait(t, srvUp, "the client's new link")
	wait(t, clUp, "the new link at the client")
	user = dial(t, hostPort("127.0.0.2", p))
	if err := echoOnce(user, []byte("after")); err != nil {
		t.Fatal(err)
	}
}

// TestTargetRefuses checks that a user whose partner cannot reach the
// target is closed (the partner answers Disconnect), and that the port
// then accepts again.
func TestTargetRefuses(t *testing.T) {
	p := freePort(t, "127.0.0.2")
	srv := &Server{Ports: []uint16{p}, Bind: "127.0.0.2", Quiet: time.Millisecond}
	srv.init()
	free := make(chan uint16, 4)
	srv.in.released = func(port uint16) { free <- port }
	partnerAddr, srvUp := startServer(t, srv, "127.0.0.2:0")
	cl := &Client{Server: partnerAddr, Target: "127.0.0.4"} // nothing listens on 127.0.0.4:p
	startClient(t, cl)
	wait(t, srvUp, "partner link")
	for i := range 2 {
		user := dial(t, hostPort("127.0.0.2", p))
		if err := expectEnd(t, user, fmt.Sprint("user ", i)); err != nil && !errors.Is(err, io.EOF) {
			t.Logf("user %d ended with %v", i, err)
		}
		select {
		case <-free:
		case <-time.After(time.Minute):
			t.Fatal("the port does not accept again after the refusal")
		}
	}
}

// TestClientReconnectBackoff checks, in virtual time, that the client
// redials for ever with jittered exponential backoff, from the shortest
// wait again after a link that came up, and stops when ctx ends.
func TestClientReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const minB, maxB = time.Second, 8 * time.Second
		var dials []time.Time
		ctx, cancel := context.WithCancel(t.Context())
		c := &Client{
			Server:     "server.invalid:50000",
			MinBackoff: minB,
			MaxBackoff: maxB,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials = append(dials, time.Now())
				switch len(dials) {
				case 6:
					a, b := net.Pipe()
					b.Close() // a link that comes up and drops at once
					return a, nil
				case 9:
					cancel()
				}
				return nil, errors.New("connection refused")
			},
		}
		if err := c.DialAndServe(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("DialAndServe = %v, want context.Canceled", err)
		}
		caps := []time.Duration{minB, 2 * minB, 4 * minB, maxB, maxB, minB, 2 * minB, 4 * minB}
		if len(dials) != len(caps)+1 {
			t.Fatalf("%d dials, want %d", len(dials), len(caps)+1)
		}
		for i, c := range caps {
			if gap := dials[i+1].Sub(dials[i]); gap <= 0 || gap > c {
				t.Errorf("wait before dial %d = %v, want in (0, %v]", i+2, gap, c)
			}
		}
	})
}
