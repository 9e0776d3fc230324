package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp"
	"rtcp/internal/flowtest"
)

// trailer is what the echo server writes after the client's half-close:
// seeing it proves the half-close reached the server, and that the client
// could still read after it.
func trailer(n int) string { return fmt.Sprintf("\necho: %d bytes then EOF\n", n) }

// startEcho runs a TCP server on loopback that echoes each connection
// until its client half-closes, writes the trailer, and closes.
func startEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flowtest.ServeEach(t, l, func(c net.Conn) {
		n, err := io.Copy(c, c)
		if err != nil {
			t.Errorf("echo server: %v", err)
			return
		}
		io.WriteString(c, trailer(int(n)))
	})
	return l.Addr().String()
}

// exchange sends msg through addr, half-closes, and checks that the echo
// and the trailer come back followed by EOF.
func exchange(addr string, msg []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-wrote; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	want := append(bytes.Clone(msg), trailer(len(msg))...)
	if !bytes.Equal(got, want) {
		return fmt.Errorf("got %d bytes ending %q, want %d ending %q",
			len(got), got[max(0, len(got)-40):], len(want), want[len(want)-40:])
	}
	return nil
}

// TestEndToEnd carries TCP exchanges through "rtcp connect" -> "rtcp dp"
// -> "rtcp expose" -> an echo server, in both directions with the
// half-close crossing each hop.
func TestEndToEnd(t *testing.T) {
	for _, transport := range []string{"json", "yamux"} {
		t.Run(transport, func(t *testing.T) {
			echo := startEcho(t)
			dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-log-level", "debug")
			_, err := launch(t, runExpose, "-dp", dp.addr, "-name", "echo", "-to", echo, "-transport", transport, "-pool", "2")
			if errors.Is(err, rtcp.ErrNotImplemented) {
				t.Skipf("transport %s: %v", transport, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			conn, err := launch(t, runConnect, "-dp", dp.addr, "-name", "echo", "-listen", "127.0.0.1:0", "-transport", transport)
			if errors.Is(err, rtcp.ErrNotImplemented) {
				t.Skipf("transport %s: %v", transport, err)
			}
			if err != nil {
				t.Fatal(err)
			}

			sizes := []int{0, 1, 3000, 1 << 20}
			var wg sync.WaitGroup
			for _, n := range sizes {
				wg.Go(func() {
					msg := make([]byte, n)
					for i := range msg {
						msg[i] = byte(i * 7)
					}
					if err := exchange(conn.addr, msg); err != nil {
						t.Errorf("%d bytes: %v", n, err)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestExposeTargetRefuses checks that a session whose -to refuses is
// closed alone, and that expose goes on serving.
func TestExposeTargetRefuses(t *testing.T) {
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0")
	expose := mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "nowhere", "-to", closedPort(t), "-log-format", "json")
	conn := mustLaunch(t, runConnect, "-dp", dp.addr, "-name", "nowhere", "-listen", "127.0.0.1:0")
	for i := range 2 {
		c, err := net.Dial("tcp", conn.addr)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(c) // EOF or a reset: either way, closed
		c.Close()
		if len(got) != 0 {
			t.Errorf("attempt %d read %q from a refused session", i, got)
		}
	}
	select {
	case <-expose.done:
		t.Fatalf("expose ended: %v", expose.err)
	default:
	}
	if !logged(t, expose, "WARN", "cannot connect; refusing the incoming connection") {
		t.Errorf("expose did not log the refusal; its output:\n%s", expose.out)
	}
}

// TestConnectNoServer checks that a connection to a name nobody serves is
// closed and the DP's reason logged, and connect goes on.
func TestConnectNoServer(t *testing.T) {
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0")
	conn := mustLaunch(t, runConnect, "-dp", dp.addr, "-name", "ghost", "-listen", "127.0.0.1:0")
	c, err := net.Dial("tcp", conn.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails, not blocks
	io.ReadAll(c)
	c.Close()
	if out := conn.out.String(); !strings.Contains(out, `no server named \"ghost\"`) {
		t.Errorf("connect did not log the DP's reason; its output:\n%s", out)
	}
}
