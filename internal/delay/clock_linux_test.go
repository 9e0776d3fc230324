package delay

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// timerfds counts this process's open timerfds.
func timerfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[timerfd]" {
			n++
		}
	}
	return n
}

// TestClockClosed: a link's writers hold a timerfd each once they have
// waited (one that found its chunk already due, late, has none), and
// every way a link ends closes them: both ends' EOF, a reset, a write
// to an end gone, and Close while bytes are held or none are.
func TestClockClosed(t *testing.T) {
	const rtt = 20 * time.Millisecond
	seen := 0
	if n := timerfds(t); n != 0 {
		t.Fatalf("%d timerfds open before the test", n)
	}
	// link returns a client's connection through r to a server running
	// handle, after a byte there and back (each writer has waited).
	server := func(handle func(*net.TCPConn)) func(t *testing.T) (*Relay, *net.TCPConn) {
		return func(t *testing.T) (*Relay, *net.TCPConn) {
			r := &Relay{To: serveTCP(t, handle), RTT: rtt}
			c := dialTCP(t, startRelay(t, r))
			b := []byte{1}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			return r, c
		}
	}
	echoed := server(echo)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (*Relay, *net.TCPConn)
		end   func(t *testing.T, c *net.TCPConn) // ends the link, or not
	}{
		{"eof", echoed, func(t *testing.T, c *net.TCPConn) {
			c.CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("read after the half-close: %v, want EOF", err)
			}
		}},
		{"reset", server(func(c *net.TCPConn) {
			io.CopyN(c, c, 1)
			io.CopyN(io.Discard, c, 1)
			c.SetLinger(0)
		}), func(t *testing.T, c *net.TCPConn) {
			c.Write([]byte{2})
			if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after the server's reset: %v, want a reset", err)
			}
		}},
		{"gone", server(func(c *net.TCPConn) {
			io.CopyN(c, c, 1)
			io.CopyN(io.Discard, c, 1)
			// closes: the relay's writes after the client's next bytes fail
		}), func(t *testing.T, c *net.TCPConn) {
			for {
				_, err := c.Write([]byte{2})
				if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
					break // the reset the relay carried back
				}
				if err != nil {
					t.Fatalf("write to a server gone: %v, want a reset", err)
				}
			}
		}},
		{"close while held", echoed, func(t *testing.T, c *net.TCPConn) {
			c.Write([]byte{2})
		}},
		{"close while idle", echoed, func(t *testing.T, c *net.TCPConn) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c := tc.setup(t)
			n := timerfds(t)
			if n > 2 {
				t.Errorf("%d timerfds open after a byte there and back, want at most 2 (one per writer)", n)
			}
			seen += n
			tc.end(t, c)
			r.Close()
			if n := timerfds(t); n != 0 {
				t.Errorf("%d timerfds open after Close", n)
			}
		})
	}
	if seen == 0 {
		t.Error("no writer held a timerfd: the test tested nothing")
	}
}
