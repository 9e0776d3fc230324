package mihini

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	wire "rtcp/protocol/mihini"
)

// unhex decodes hex digits, ignoring spaces; it only sees literals of the
// tests.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// frame encodes one frame, for the hand-written peers of the tests.
func frame(cmd wire.Command, client uint8, payload []byte) []byte {
	b, err := wire.AppendFrame(nil, wire.Frame{Command: cmd, Client: client, Payload: payload})
	if err != nil {
		panic(err)
	}
	return b
}

func connectFrame(client uint8, host string, port uint16) []byte {
	p, err := wire.AppendConnect(nil, host, port)
	if err != nil {
		panic(err)
	}
	return frame(wire.Connect, client, p)
}

// listen listens on a loopback port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// startEcho runs a TCP echo service on loopback: it echoes each connection
// until the client closes, then closes. It returns its address and a
// channel that receives the error that ended each connection (nil for a
// clean end).
func startEcho(t *testing.T) (string, <-chan error) {
	t.Helper()
	l := listen(t)
	ends := make(chan error, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, err := io.Copy(c, c)
				select {
				case ends <- err:
				default:
				}
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String(), ends
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// echoOnce writes msg to c and reads it back, with a deadline that turns
// a hang into a failure.
func echoOnce(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(time.Minute))
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes differs", len(msg))
	}
	return nil
}

// pattern returns n bytes that differ from one test message to the next.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

// expectBytes reads len(want) bytes from c and compares them.
func expectBytes(t *testing.T, c net.Conn, want []byte, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got := make([]byte, len(want))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("%s: read % x, then %v; want % x", what, got[:n], err, want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got % x\nwant % x", what, got, want)
	}
}

// expectEnd checks that c ends (EOF or an error) with no more bytes.
func expectEnd(t *testing.T, c net.Conn, what string) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	if len(got) != 0 {
		t.Fatalf("%s: read % x, want the end", what, got)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: still open after a minute", what)
	}
	return err
}
