package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// TestFullCloseEndsBothDirections checks that a clean end on the far side
// of Join closes the wrapped connection fully: its peer reads EOF and
// Join returns, although the peer never closed its own side.
func TestFullCloseEndsBothDirections(t *testing.T) {
	app, local := flowtest.TCPPair(t)
	wire, far := net.Pipe()
	joined := make(chan error, 1)
	go func() {
		_, err := Join(FullClose(local), wire, nil)
		joined <- err
	}()
	go func() {
		far.Write([]byte("bye"))
		far.Close()
	}()
	app.SetDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(app)
	if err != nil || string(got) != "bye" {
		t.Fatalf("application read %q, %v; want \"bye\", EOF", got, err)
	}
	select {
	case err := <-joined:
		if err != nil {
			t.Errorf("Join = %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Join still runs after the far side ended: the wrapped connection was only half-closed")
	}
}

// failConn is a link whose reads fail: a relay over it fails.
type failConn struct{ net.Conn }

func (failConn) Read([]byte) (int, error) { return 0, errors.New("link lost") }

// TestFullCloseKeepsReset checks that a failed relay still resets the
// wrapped TCP connection, rather than closing it cleanly.
func TestFullCloseKeepsReset(t *testing.T) {
	app, local := flowtest.TCPPair(t)
	wire, far := net.Pipe()
	defer far.Close()
	if _, err := Join(FullClose(local), failConn{wire}, nil); err == nil {
		t.Fatal("Join over a failing link returned nil")
	}
	app.SetDeadline(time.Now().Add(time.Minute))
	if got, err := io.ReadAll(app); err == nil {
		t.Fatalf("application read %q and a clean EOF after a failed relay; want a reset", got)
	}
}
