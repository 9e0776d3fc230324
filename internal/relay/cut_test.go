package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

func TestCut(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, false},
		{net.ErrClosed, false},
		{&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}, false},
		{io.ErrClosedPipe, false},
		{fmt.Errorf("read: %w", io.ErrClosedPipe), false},
		{errors.New("rtcp: session 1 cut: its reader took nothing for 10s"), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true},
	} {
		if got := Cut(tt.err); got != tt.want {
			t.Errorf("Cut(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// failingConn is a connection whose reads fail with err.
type failingConn struct {
	net.Conn
	err error
}

func (c failingConn) Read([]byte) (int, error) { return 0, c.err }

// TestJoinReportsTheFailure: when one direction fails, Join cuts both
// sides, and the other direction then reads a side closed under it. Join
// returns the failure, not that close, with a net.Pipe (io.ErrClosedPipe)
// as with a TCP connection (net.ErrClosed).
func TestJoinReportsTheFailure(t *testing.T) {
	boom := errors.New("the source failed")
	a, farA := net.Pipe()
	b, farB := net.Pipe()
	defer farA.Close()
	defer farB.Close()
	_, err := Join(a, failingConn{b, boom}, nil)
	if !errors.Is(err, boom) {
		t.Errorf("Join = %v, want the failure %v", err, boom)
	}
}
