package tcpipe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listenOn listens on a loopback address, such as "127.0.0.4:0".
func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func portOf(t *testing.T, addr net.Addr) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

// startEcho runs an echo service on addr (host:port, port may be 0). It
// echoes each connection until the client closes. It returns the port
// and a channel of the errors that ended connections (nil: clean).
func startEcho(t *testing.T, addr string) (uint16, <-chan error) {
	t.Helper()
	l := listenOn(t, addr)
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
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return portOf(t, l.Addr()), ends
}

// freePort returns a port with nothing listening on host.
func freePort(t *testing.T, host string) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return portOf(t, l.Addr())
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

func hostPort(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// echoOnce writes msg to c and reads it back.
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

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

// wireFrame builds a frame's bytes by hand, from the layout in SPEC.md,
// not with the codec: the golden bytes the adapters must put on the wire.
func wireFrame(kind, local byte, port uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 21)
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(data)))
	b = append(b, kind, local, byte(port), byte(port>>8)) // port little-endian
	return append(b, data...)
}

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

// expectEnd checks that c ends with no more bytes and returns how.
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

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute", what)
	}
}

// testLogger logs to the test's output, shown when it fails or with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
