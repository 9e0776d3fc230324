package yamuxlink

import (
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"rtcp/internal/mux"
)

// pair is two of our sessions on a loopback connection, client and server,
// each with an audit Framer.
type pair struct {
	client, server *mux.Session
	ca, sa         *audit
}

func newPair(t *testing.T) *pair {
	c, s := tcpPair(t)
	p := &pair{ca: newAudit(t, c, true), sa: newAudit(t, s, false)}
	p.client = ours(c, true, p.ca, nil)
	p.server = ours(s, false, p.sa, nil)
	t.Cleanup(func() { closeBoth(p.client, p.server) })
	return p
}

func TestOursEcho(t *testing.T) {
	p := newPair(t)
	for _, dir := range []struct {
		name     string
		from, to *mux.Session
		parity   int64
	}{
		{"client opens", p.client, p.server, 1},
		{"server opens", p.server, p.client, 0},
	} {
		t.Run(dir.name, func(t *testing.T) {
			for range 3 {
				a, b := openOurs(t, dir.from, dir.to.Accept)
				if a.ID()%2 != dir.parity || a.ID() != b.ID() {
					t.Errorf("stream IDs %d and %d; want equal, parity %d", a.ID(), b.ID(), dir.parity)
				}
				go func() {
					io.Copy(b, b)
					b.CloseWrite()
				}()
				a.Write([]byte("echo me"))
				a.CloseWrite()
				got, err := io.ReadAll(a)
				if err != nil || string(got) != "echo me" {
					t.Errorf("echo: %q, %v", got, err)
				}
				a.Close()
			}
		})
	}
}

// TestOursHalfClose checks half-close both ways: each side goes on
// writing after the other has ended its direction.
func TestOursHalfClose(t *testing.T) {
	p := newPair(t)
	a, b := openOurs(t, p.client, p.server.Accept)
	a.CloseWrite()
	if got, err := io.ReadAll(b); err != nil || len(got) != 0 {
		t.Fatalf("server read %q, %v after the client's CloseWrite", got, err)
	}
	b.Write([]byte("still here"))
	b.CloseWrite()
	if got, err := io.ReadAll(a); err != nil || string(got) != "still here" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("Write after CloseWrite succeeded")
	}
	a.Close()
	b.Close()

	// And the other way round, with Close after CloseWrite on the server.
	a, b = openOurs(t, p.server, p.client.Accept)
	a.CloseWrite()
	a.Close()
	if got, err := io.ReadAll(b); err != nil || len(got) != 0 {
		t.Fatalf("client read %q, %v after the server's CloseWrite", got, err)
	}
	b.Close()
}

func TestOursAbort(t *testing.T) {
	p := newPair(t)
	a, b := openOurs(t, p.client, p.server.Accept)
	b.Abort(errors.New("rtcp: cut off"))
	_, err := io.ReadAll(a)
	if err == nil || !strings.Contains(err.Error(), ResetReason) {
		t.Fatalf("read after the peer's Abort: %v, want %q", err, ResetReason)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("Write after the peer's Abort succeeded")
	}
}

// TestOursWindow moves 16 MiB through a reader that stalls until the
// writer has used up the whole 4 MiB window, several times: the sender
// never exceeds the window and uses all of it.
func TestOursWindow(t *testing.T) {
	p := newPair(t)
	a, b := openOurs(t, p.client, p.server.Accept)
	const total = 16 << 20
	sum := make(chan [32]byte, 1)
	go func() {
		s, err := writePattern(a, total, 256<<10, 7)
		if err != nil {
			t.Error(err)
		}
		a.CloseWrite()
		sum <- s
	}()
	stalledRead(t, b, p.sa.full, total, sum)
	if r, s := p.sa.most(), p.ca.most(); r.recv != DefaultWindow || s.send != DefaultWindow {
		t.Errorf("most in flight: %d received, %d sent; want the window, %d", r.recv, s.send, DefaultWindow)
	}
}

// stalledRead reads total bytes from r, stalling until full says the
// window is used up before each of the first reads, and checks what it
// read against the writer's sum.
func stalledRead(t *testing.T, r io.Reader, full <-chan int64, total int, sum <-chan [32]byte) {
	t.Helper()
	h := sha256.New()
	n := 0
	for range 3 {
		within(t, "filling the window", func() { <-full })
		k, err := io.CopyN(h, r, DefaultWindow/2)
		n += int(k)
		if err != nil {
			t.Fatal(err)
		}
	}
	within(t, "reading the rest", func() {
		k, err := io.Copy(h, r)
		n += int(k)
		if err != nil {
			t.Error(err)
		}
	})
	if want := <-sum; n != total || [32]byte(h.Sum(nil)) != want {
		t.Errorf("read %d bytes, SHA-256 %x; want %d bytes, %x", n, h.Sum(nil), total, want)
	}
}

// TestOursKeepAlive checks that each side's heartbeat pings are answered.
func TestOursKeepAlive(t *testing.T) {
	p := newPair(t)
	p.client.SetKeepAlive(time.Millisecond)
	p.server.SetKeepAlive(time.Millisecond)
	for range 3 {
		within(t, "a pong to the client", func() { <-p.ca.pongs })
		within(t, "a pong to the server", func() { <-p.sa.pongs })
	}
	p.client.SetKeepAlive(0)
	p.server.SetKeepAlive(0)
}
