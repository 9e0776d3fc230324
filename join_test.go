package rtcp

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c, r.c
}

// TestJoinHalfClose: each side's end crosses Join as a half-close, so
// that the other side can still answer; Join counts the bytes each way.
func TestJoinHalfClose(t *testing.T) {
	left, a := tcpPair(t)
	b, right := tcpPair(t)
	type result struct {
		aToB, bToA int64
		err        error
	}
	done := make(chan result, 1)
	go func() {
		ab, ba, err := Join(a, b)
		done <- result{ab, ba, err}
	}()
	if _, err := left.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	left.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(right)
	if err != nil || string(got) != "ping" {
		t.Fatalf("the right end read %q, %v; want \"ping\" and the end", got, err)
	}
	if _, err := right.Write([]byte("pong!")); err != nil {
		t.Fatal(err)
	}
	right.(*net.TCPConn).CloseWrite()
	got, err = io.ReadAll(left)
	if err != nil || string(got) != "pong!" {
		t.Fatalf("the left end read %q, %v; want \"pong!\" and the end", got, err)
	}
	r := <-done
	if r.err != nil || r.aToB != 4 || r.bToA != 5 {
		t.Errorf("Join = %d, %d, %v; want 4, 5, nil", r.aToB, r.bToA, r.err)
	}
}

// brokenConn fails every Read with errBrokenSource.
type brokenConn struct{ net.Conn }

var errBrokenSource = errors.New("broken source")

func (brokenConn) Read([]byte) (int, error) { return 0, errBrokenSource }

// TestJoinErrorSaysWhichSide: the error of a failed copy wraps what
// failed and names the direction by the sides' remote addresses.
func TestJoinErrorSaysWhichSide(t *testing.T) {
	for _, broken := range []string{"a", "b"} {
		t.Run(broken, func(t *testing.T) {
			_, a := tcpPair(t)
			b, _ := tcpPair(t)
			from, to := a, b
			if broken == "a" {
				a = brokenConn{a}
			} else {
				b = brokenConn{b}
				from, to = b, a
			}
			_, _, err := Join(a, b)
			if !errors.Is(err, errBrokenSource) {
				t.Fatalf("Join: %v, want an error that wraps %v", err, errBrokenSource)
			}
			want := "from " + from.RemoteAddr().String() + " to " + to.RemoteAddr().String()
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Join: %q, want it to say %q", err, want)
			}
		})
	}
}
