package c8y_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"rtcp"
	"rtcp/c8y"
	"rtcp/internal/memnet"
	wire "rtcp/protocol/c8y"
)

// inMemory runs a DP, its remote access Server on an in-memory HTTP
// server, and an agent that reaches both through memory.
type inMemory struct {
	dp      *rtcp.DiscoverPoint
	srv     *c8y.Server
	agent   *c8y.Agent
	status  *lines
	service chan net.Conn // the endpoint's ends of the agent's TCP connections
	close   func()
}

func newInMemory() *inMemory {
	m := &inMemory{dp: new(rtcp.DiscoverPoint), status: newLines(), service: make(chan net.Conn, 4)}
	m.srv = &c8y.Server{DP: m.dp}
	l := memnet.NewAt(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443})
	hs := &http.Server{Handler: m.srv}
	served := make(chan struct{})
	go func() { hs.Serve(l); close(served) }()
	tr := &http.Transport{DialContext: l.DialContext}
	m.agent = &c8y.Agent{
		URL:          "ws://c8y.test",
		HTTPClient:   &http.Client{Transport: tr},
		Status:       m.status,
		StatusFormat: c8y.StatusText,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, b := net.Pipe()
			m.service <- b
			return a, nil
		},
	}
	m.close = func() {
		m.srv.Close()
		m.dp.Close()
		hs.Close()
		tr.CloseIdleConnections()
		<-served
	}
	return m
}

// A key expires: while nobody used it its name leaves the DP, and a device
// that waits for a client is closed, which ends the agent's tunnel.
func TestKeyExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newInMemory()
		defer m.close()

		idle, err := m.srv.NewKey("idle", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		waiting, err := m.srv.NewKey("", 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- m.agent.Handle(context.Background(), wire.Operation{Host: "10.0.0.7", Port: 22, Key: waiting.Key})
		}()
		svc := <-m.service
		defer svc.Close()
		synctest.Wait()
		if got := <-m.status.ch; got != "EXECUTING "+waiting.Key+"\n" {
			t.Fatalf("status %q", got)
		}
		if got := <-m.status.ch; got != "SUCCESSFUL "+waiting.Key+"\n" {
			t.Fatalf("status %q", got)
		}

		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if err := relayTo(m.dp, idle.Name); err == nil || !strings.Contains(err.Error(), "no server") {
			t.Fatalf("a client of an expired key: %v, want no server", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the tunnel of the unexpired key ended: %v", err)
		default:
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the device of an expired key is still connected")
		}
		if n, err := svc.Read(make([]byte, 1)); err == nil {
			t.Fatalf("the endpoint read %d bytes after the tunnel ended", n)
		}
		if err := relayTo(m.dp, waiting.Name); err == nil {
			t.Fatal("a client got through with an expired key")
		}
	})
}

// A tunnel that paired before its key's expiry outlives it.
func TestPairedTunnelOutlivesKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newInMemory()
		defer m.close()
		k, err := m.srv.NewKey("plc", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- m.agent.Handle(context.Background(), wire.Operation{Host: "10.0.0.7", Port: 502, Key: k.Key})
		}()
		svc := <-m.service
		defer svc.Close()
		go func() { io.Copy(svc, svc) }()

		client, door := net.Pipe()
		relayed := make(chan error, 1)
		go func() { relayed <- m.dp.Relay(door, "plc", "test") }()
		time.Sleep(10 * time.Minute)
		client.Write([]byte("read coils"))
		b := make([]byte, 10)
		if _, err := io.ReadFull(client, b); err != nil || string(b) != "read coils" {
			t.Fatalf("after the key's expiry the tunnel echoed %q, %v", b, err)
		}
		client.Close()
		<-relayed
		if err := <-done; err != nil {
			t.Fatalf("Handle = %v", err)
		}
	})
}

// relayTo tries a client session to name through the DP's byte door.
func relayTo(dp *rtcp.DiscoverPoint, name string) error {
	a, b := net.Pipe()
	defer a.Close()
	return dp.Relay(b, name, "probe")
}
