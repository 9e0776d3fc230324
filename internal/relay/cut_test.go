package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"rtcp/internal/mux"
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

// halves is a link's connection whose two directions are separate pipes,
// as across a network: one direction can end while the other still waits.
type halves struct {
	net.Conn          // read from
	w        net.Conn // written to
}

func (h halves) Write(p []byte) (int, error) { return h.w.Write(p) }

func (h halves) Close() error {
	h.w.Close()
	return h.Conn.Close()
}

// TestJoinLinkLostIsACut is a DP's relay between a client's stream and a
// server's, when the server's link dies and the DP learns it from a write
// to a net.Pipe whose peer's end is closed (io.ErrClosedPipe, which Join
// takes for a quiet close when it comes from a side closed under it). The
// client must read an error, not a clean end: what it sent is lost.
func TestJoinLinkLostIsACut(t *testing.T) {
	client, dpClient, closeSessions := streamPair(t)
	defer closeSessions()

	in, peerOut := net.Pipe()
	out, peerIn := net.Pipe()
	link, server := halves{in, out}, halves{peerIn, peerOut}
	defer server.Close()
	s := mux.New(link, newJSONFramer(link), mux.Config{Name: "link to server"})
	defer s.Close()
	opened := make(chan *mux.Stream, 1)
	go func() {
		st, err := s.Open(context.Background(), "client", "")
		if err != nil {
			t.Errorf("Open: %v", err)
		}
		opened <- st
	}()
	peer := newJSONFramer(server)
	if f, err := peer.ReadFrame(); err != nil || f.Kind != mux.KindOpen {
		t.Fatalf("server read %+v, %v; want an Open", f, err)
	}
	peer.WriteFrame(&mux.Frame{Kind: mux.KindAck, ID: 1})
	peer.Flush()
	dpServer := <-opened
	if dpServer == nil {
		return
	}

	joined := make(chan error, 1)
	go func() {
		_, err := Join(dpClient, dpServer, nil)
		joined <- err
	}()
	server.Conn.Close() // the server is gone; the DP's next write says so
	client.Write([]byte("lost"))
	if got, err := io.ReadAll(client); err == nil {
		t.Errorf("the client read %q and a clean end, although the server's link died", got)
	}
	if err := <-joined; !Cut(err) {
		t.Errorf("Join = %v, want the lost link", err)
	}
}

// writeFailingConn is a connection whose writes fail with err.
type writeFailingConn struct {
	net.Conn
	err error
}

func (c writeFailingConn) Write([]byte) (int, error) { return 0, c.err }

// passScanner passes every byte on and never goes plain.
type passScanner struct{}

func (passScanner) Scan(p []byte) (int, error) { return len(p), nil }
func (passScanner) Plain() bool                { return false }
func (passScanner) End() error                 { return nil }

// TestJoinReportsTheFailedHalf: Join says which direction failed and
// whether it was the write of its destination or the read of its source,
// with and without a Scanner.
func TestJoinReportsTheFailedHalf(t *testing.T) {
	boom := errors.New("boom")
	for _, scanned := range []bool{false, true} {
		for _, tc := range []struct {
			name     string
			wrap     func(a, b net.Conn) (net.Conn, net.Conn)
			aToB, wr bool
			writeTo  func(farA, farB net.Conn) // the bytes that meet the failure
		}{
			{"b's write fails", func(a, b net.Conn) (net.Conn, net.Conn) { return a, writeFailingConn{b, boom} }, true, true,
				func(farA, farB net.Conn) { farA.Write([]byte("x")) }},
			{"a's write fails", func(a, b net.Conn) (net.Conn, net.Conn) { return writeFailingConn{a, boom}, b }, false, true,
				func(farA, farB net.Conn) { farB.Write([]byte("x")) }},
			{"a's read fails", func(a, b net.Conn) (net.Conn, net.Conn) { return failingConn{a, boom}, b }, true, false,
				func(farA, farB net.Conn) {}},
			{"b's read fails", func(a, b net.Conn) (net.Conn, net.Conn) { return a, failingConn{b, boom} }, false, false,
				func(farA, farB net.Conn) {}},
		} {
			t.Run(fmt.Sprintf("%s, scanned %v", tc.name, scanned), func(t *testing.T) {
				a, farA := net.Pipe()
				b, farB := net.Pipe()
				defer farA.Close()
				defer farB.Close()
				ja, jb := tc.wrap(a, b)
				var aToB, bToA Scanner
				if scanned {
					aToB, bToA = passScanner{}, passScanner{}
				}
				go tc.writeTo(farA, farB)
				st, err := JoinScanned(ja, jb, nil, aToB, bToA)
				if !errors.Is(err, boom) || st.FailedAtoB != tc.aToB || st.FailedWrite != tc.wr {
					t.Errorf("JoinScanned: %v, FailedAtoB %v, FailedWrite %v; want %v, %v, %v", err, st.FailedAtoB, st.FailedWrite, boom, tc.aToB, tc.wr)
				}
			})
		}
	}
}
