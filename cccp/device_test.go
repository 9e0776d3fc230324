package cccp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"rtcp"
	"rtcp/cccp"
	wire "rtcp/protocol/cccp"
)

const servicePort = 502

// echoOn serves an echo service on port of n until the listener closes.
func echoOn(t *testing.T, n *memNet, port int) (net.Listener, chan struct{}) {
	l, err := n.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l, done
}

// The Thing: it waits (with backoff) for its local service, registers,
// carries a client's session to the service, and registers again when the
// proxy closes its connection.
func TestDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, 40000, 40009)
		defer e.close()
		var dials atomic.Int32
		d := &cccp.Device{
			Proxy: "proxy.example.net:7000", Serial: "CLD-42", To: "127.0.0.1:502",
			MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				if addr == "127.0.0.1:502" {
					return e.n.Dial(ctx, "127.0.0.1:33000", servicePort)
				}
				return e.n.Dial(ctx, "198.51.100.7:33001", devicePort)
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- d.Run(ctx) }()

		// The service is down: the device keeps trying, backing off. The
		// waits are random in (0, 1 s], (0, 2 s], (0, 4 s], then (0, 8 s]:
		// at least 5 attempts fit in 20 s, and 20 would need waits that
		// average under 1 s where they average 4 (12, the bound this had,
		// was passed in about one run of 100).
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if n := dials.Load(); n < 5 || n > 20 {
			t.Fatalf("%d attempts in 20 s with backoff from 1 s to 8 s", n)
		}
		port := e.on("serial=CLD-42")
		if st := e.status("CLD-42"); st.DeviceConnected {
			t.Fatal("registered without its service")
		}
		svc, svcDone := echoOn(t, e.n, servicePort)
		time.Sleep(9 * time.Second)
		if st := e.status("CLD-42"); !st.DeviceConnected {
			t.Fatal("the device did not register once its service was up")
		}

		cl := e.client(port, "203.0.113.5:1")
		send(t, cl, "modbus")
		expect(t, cl, "modbus")
		cl.Close()
		e.wantOff("CLD-42", port) // non-persistent: the session ended it

		// The proxy closed the device's connection too; it comes back.
		time.Sleep(time.Minute)
		e.on("serial=CLD-42")
		if st := e.status("CLD-42"); !st.DeviceConnected {
			t.Fatal("the device did not register again")
		}

		cancel()
		if err := <-ran; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		svc.Close()
		<-svcDone
	})
}

func TestDeviceBadConfig(t *testing.T) {
	for _, d := range []cccp.Device{
		{Proxy: "p:1", Serial: "bad\rserial", To: "s:1"},
		{Proxy: "p:1", Serial: "", To: "s:1"},
		{Serial: "ok", To: "s:1"},
	} {
		if err := d.Run(context.Background()); err == nil {
			t.Errorf("Run(%+v) succeeded", d)
		}
	}
}

// Over real loopback TCP: a DP, the proxy's device port and API, the
// Thing, and clients on the proxy port and through rtcp.Dial.
func TestEndToEnd(t *testing.T) {
	dp := new(rtcp.DiscoverPoint)
	dpl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dpServed := make(chan error, 1)
	go func() { dpServed <- dp.Serve(dpl) }()
	devl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A free range of two ports on loopback.
	var ports []int
	for len(ports) < 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	p := &cccp.Proxy{DP: dp, MinPort: lo, MaxPort: hi, ListenHost: "127.0.0.1", Token: "tok"}
	p.Listen = func(network, addr string) (net.Listener, error) {
		// Only the two ports probed, not those between them.
		if !strings.HasSuffix(addr, ":"+itoa(lo)) && !strings.HasSuffix(addr, ":"+itoa(hi)) {
			return nil, &net.OpError{Op: "listen", Err: errInUse}
		}
		return net.Listen(network, addr)
	}
	devServed := make(chan error, 1)
	go func() { devServed <- p.ServeDevices(devl) }()
	api := httptest.NewServer(p)
	defer func() {
		api.Close()
		p.Close()
		dp.Close()
		<-devServed
		<-dpServed
	}()

	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	defer svc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	thing := &cccp.Device{Proxy: devl.Addr().String(), Serial: "CLD-123456", To: svc.Addr().String(), MinBackoff: 10 * time.Millisecond}
	go func() { ran <- thing.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	get := func(path string) (int, string) {
		t.Helper()
		return apiGet(t, p, "GET", path, "192.0.2.1:1", "Authorization", "Bearer tok")
	}
	code, body := get("/on?serial=CLD-123456&persistent=true")
	if code != 200 {
		t.Fatalf("/on: %d %s", code, body)
	}
	var on wire.OnResponse
	jsonUnmarshal(t, body, &on)
	// Wait for the Thing to register.
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := p.Status("CLD-123456"); !st.DeviceConnected; st, _ = p.Status("CLD-123456") {
		if time.Now().After(deadline) {
			t.Fatal("the Thing did not register")
		}
		time.Sleep(5 * time.Millisecond)
	}

	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(on.Port)))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("telemetry ", 100000)
	go c.Write([]byte(big))
	expect(t, c, big)
	// The proxy closes the client's connection only after the session has
	// ended (and freed the device): wait for that before the next client,
	// which would otherwise find the device still busy.
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the proxy did not end the client's connection cleanly: %v", err)
	}
	c.Close()

	// The same device by name through the DP.
	rc, err := rtcp.Dial(dpl.Addr().String(), p.Name("CLD-123456"))
	if err != nil {
		t.Fatal(err)
	}
	send(t, rc, "by name")
	expect(t, rc, "by name")
	rc.Close()

	// Off: the name still leads to the device, but it refuses.
	get("/off?serial=CLD-123456")
	if _, err := rtcp.Dial(dpl.Addr().String(), p.Name("CLD-123456")); err == nil || !strings.Contains(err.Error(), "no proxy is on") {
		t.Fatalf("rtcp.Dial with the proxy off: %v", err)
	}
	// A whitelist that leaves loopback out refuses rtcp.Dial too.
	get("/on?serial=CLD-123456&persistent=true&ip_whitelist=10.0.0.0/8")
	if _, err := rtcp.Dial(dpl.Addr().String(), p.Name("CLD-123456")); err == nil || !strings.Contains(err.Error(), "ip_whitelist") {
		t.Fatalf("rtcp.Dial from outside the whitelist: %v", err)
	}
}

var errInUse = syscall.EADDRINUSE

func itoa(n int) string { return strconv.Itoa(n) }

func jsonUnmarshal(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
}
