package mihini

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	wire "rtcp/protocol/mihini"
)

// startDevice runs d against a hand-written server on loopback and returns
// the server's end of the link, after checking the LISTEN on it.
func startDevice(t *testing.T, d *Device) (link net.Conn, r *running) {
	t.Helper()
	l := listen(t)
	d.Server = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	r = &running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = d.DialAndServe(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	l.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	expectBytes(t, c, unhex("00 00 04 00"), "the device's first frame, LISTEN")
	return c, r
}

// running is a DialAndServe running in the background: err is set once
// done is closed.
type running struct {
	done chan struct{}
	err  error
}

func hostPort(t *testing.T, addr string) (string, uint16) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, uint16(port)
}

// startGreeter runs a service that writes msg to each connection and
// closes it: the service ends the session.
func startGreeter(t *testing.T, msg string) string {
	t.Helper()
	l := listen(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(msg))
			c.Close()
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}

// TestDeviceWire plays the server by hand, as the original does (DATA
// before its CONNECT included), and checks every byte the device sends.
func TestDeviceWire(t *testing.T) {
	echo, ends := startEcho(t)
	echoHost, echoPort := hostPort(t, echo)
	greetHost, greetPort := hostPort(t, startGreeter(t, "bye"))
	refHost, refPort := hostPort(t, closedPort(t))
	srv, _ := startDevice(t, &Device{EarlyData: 1})

	// DATA before CONNECT, as the original server sends it: held, and
	// delivered once the service is dialled.
	srv.Write(frame(wire.Data, 1, []byte("hello")))
	srv.Write(connectFrame(1, echoHost, echoPort))
	expectBytes(t, srv, unhex("00 05 03 01 68 65 6c 6c 6f"), "the echo of the early DATA")
	srv.Write(frame(wire.Data, 1, []byte("more")))
	expectBytes(t, srv, unhex("00 04 03 01 6d 6f 72 65"), "the echo of DATA after CONNECT")

	// The server ends session 1: the device closes the service and
	// answers CLOSE.
	srv.Write(unhex("00 00 02 01"))
	expectBytes(t, srv, unhex("00 00 02 01"), "the answer to CLOSE 1")
	if err := <-ends; err != nil {
		t.Errorf("the service's connection ended with %v, want a clean end", err)
	}

	// A service that cannot be reached: CLOSE.
	srv.Write(connectFrame(2, refHost, refPort))
	expectBytes(t, srv, unhex("00 00 02 02"), "CLOSE for a refused CONNECT")

	// The service ends session 3 first: its bytes, then CLOSE; the
	// server's answer is not answered again.
	srv.Write(connectFrame(3, greetHost, greetPort))
	expectBytes(t, srv, unhex("00 03 03 03 62 79 65 00 00 02 03"), "the service's bytes and CLOSE 3")
	srv.Write(unhex("00 00 02 03"))

	// DATA before CONNECT in the same segment as the CONNECT, for an id
	// that was just used.
	srv.Write(append(frame(wire.Data, 3, []byte("again")), connectFrame(3, echoHost, echoPort)...))
	expectBytes(t, srv, frame(wire.Data, 3, []byte("again")), "the echo on a reused id")

	// More early DATA than the device holds (never less than a frame):
	// CLOSE, and the CONNECT that follows belongs to the refused client.
	srv.Write(frame(wire.Data, 4, bytes.Repeat([]byte{'z'}, wire.MaxPayload)))
	srv.Write(frame(wire.Data, 4, []byte("!")))
	expectBytes(t, srv, unhex("00 00 02 04"), "CLOSE for a client whose early DATA overflowed")
	srv.Write(connectFrame(4, echoHost, echoPort))
	srv.Write(unhex("00 00 02 04"))

	// A CONNECT that cannot be parsed: CLOSE for its id, and the link
	// goes on. (The refused client 4 sent nothing more: the next frame
	// is about 5.)
	srv.Write(unhex("00 03 01 05 00 05 61"))
	expectBytes(t, srv, unhex("00 00 02 05"), "CLOSE for a malformed CONNECT")

	// A CLOSE for an id with only early DATA drops it, unanswered.
	srv.Write(frame(wire.Data, 6, []byte("lost")))
	srv.Write(unhex("00 00 02 06"))
	srv.Write(connectFrame(6, refHost, refPort))
	expectBytes(t, srv, unhex("00 00 02 06"), "CLOSE for the refused CONNECT 6, and nothing before it")

	// Session 3 still runs.
	srv.Write(frame(wire.Data, 3, []byte("still")))
	expectBytes(t, srv, frame(wire.Data, 3, []byte("still")), "session 3 after all that")
}

// TestDeviceLinkLoss checks that without Reconnect a dropped link ends
// DialAndServe with an error and cuts the service's connections.
func TestDeviceLinkLoss(t *testing.T) {
	echo, ends := startEcho(t)
	h, p := hostPort(t, echo)
	srv, run := startDevice(t, &Device{})
	srv.Write(connectFrame(1, h, p))
	srv.Write(frame(wire.Data, 1, []byte("x")))
	expectBytes(t, srv, frame(wire.Data, 1, []byte("x")), "echo")
	srv.Close()
	select {
	case <-run.done:
		if run.err == nil || errors.Is(run.err, context.Canceled) {
			t.Errorf("DialAndServe = %v, want the link's loss", run.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("DialAndServe still runs a minute after the link dropped")
	}
	if err := <-ends; err == nil {
		t.Error("the service's connection ended cleanly when the link dropped; want a reset")
	}
}

// TestDeviceReconnectBackoff checks, in virtual time, that a device asked
// to reconnect waits with exponential jittered backoff between failed
// dials, starts again from the shortest wait after a link that came up,
// and stops when its context ends.
func TestDeviceReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const minB, maxB = time.Second, 4 * time.Second
		var dials []time.Time
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		d := &Device{
			Server:     "server.invalid:9100",
			Reconnect:  true,
			MinBackoff: minB,
			MaxBackoff: maxB,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials = append(dials, time.Now())
				switch len(dials) {
				case 5:
					// A link that comes up, gets LISTEN, and drops.
					dev, srv := net.Pipe()
					wg.Go(func() {
						buf := make([]byte, 4)
						io.ReadFull(srv, buf)
						srv.Close()
					})
					return dev, nil
				case 8:
					cancel()
				}
				return nil, errors.New("connection refused")
			},
		}
		if err := d.DialAndServe(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("DialAndServe = %v, want context.Canceled", err)
		}
		wg.Wait()
		// The cap on each wait: dials 1-4 fail (1, 2, 4 s, then capped
		// at 4 s), dial 5 makes a link that drops, and the waits start
		// again at 1 s.
		caps := []time.Duration{minB, 2 * minB, 4 * minB, maxB, minB, 2 * minB, 4 * minB}
		if len(dials) != len(caps)+1 {
			t.Fatalf("%d dials, want %d", len(dials), len(caps)+1)
		}
		for i, c := range caps {
			gap := dials[i+1].Sub(dials[i])
			if gap <= 0 || gap > c {
				t.Errorf("wait before dial %d = %v, want in (0, %v]", i+2, gap, c)
			}
		}
	})
}

// TestDeviceNoReconnect checks that without Reconnect a failed dial is
// returned at once.
func TestDeviceNoReconnect(t *testing.T) {
	d := &Device{Server: closedPort(t)}
	if err := d.DialAndServe(context.Background()); err == nil {
		t.Fatal("DialAndServe to a closed port returned nil")
	}
	if err := (&Device{}).DialAndServe(context.Background()); err == nil {
		t.Fatal("DialAndServe with no Server returned nil")
	}
}
