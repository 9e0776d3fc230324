package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// TestJoinCutsTLSWithAReset: a side that is TLS over TCP (a DP's leg with
// a TLSConfig) is cut with a reset of the TCP connection under it, and
// no clean goodbye before it: its peer's read fails. A Close of the TLS
// connection would send close_notify, which the peer reads as the end.
func TestJoinCutsTLSWithAReset(t *testing.T) {
	side, peer := flowtest.TLSPair(t)
	boom := errors.New("the other side failed")
	b, farB := net.Pipe()
	defer farB.Close()
	if _, err := Join(side, failingConn{b, boom}, nil); !errors.Is(err, boom) {
		t.Errorf("Join = %v, want %v", err, boom)
	}
	if _, err := peer.Read(make([]byte, 1)); !tcpreset.Is(err) {
		t.Errorf("the TLS peer of a side cut read %v, want a reset", err)
	}
}

// TestJoinTLSSourceResetTakenByAWrite: the peer of a TLS side resets it,
// and a write to the side takes the reset, so that its read returns a
// bare io.EOF. Join must take that for the reset it is (the TCP socket
// under the TLS connection says so) and cut the other side, not pass a
// clean end on.
func TestJoinTLSSourceResetTakenByAWrite(t *testing.T) {
	side, peer := flowtest.TLSPair(t)
	tcpreset.Reset(peer)
	var werr error
	for werr == nil {
		_, werr = side.Write([]byte("answer"))
	}
	if !tcpreset.Is(werr) {
		t.Fatalf("a write to the reset side: %v, want the reset", werr)
	}
	b, far := flowtest.TCPPair(t)
	joined := make(chan error, 1)
	go func() {
		_, err := Join(side, b, nil)
		joined <- err
	}()
	if _, err := io.ReadAll(far); !tcpreset.Is(err) {
		t.Errorf("the other side's peer read %v, want a reset", err)
	}
	far.Close()
	if err := <-joined; !Cut(err) {
		t.Errorf("Join = %v, want a cut", err)
	}
}

// abortRecorder is a connection that is cut with Abort (a WebSocket),
// which records it.
type abortRecorder struct {
	net.Conn
	aborted chan error
}

func (c *abortRecorder) Abort(err error) {
	c.aborted <- err
	c.Conn.Close()
}

// layer is a connection over another that says which (NetConn), as a TLS
// connection or a raw leg's buffer of bytes read with its handshake does.
type layer struct{ net.Conn }

func (l layer) NetConn() net.Conn { return l.Conn }

// TestJoinCutsTheAborterUnderALayer: a side that is a layer (TLS, a
// buffer) over a connection with an Abort of its own (a WebSocket, whose
// Close its peer reads as the end) is cut with that Abort, not with the
// layer's Close.
func TestJoinCutsTheAborterUnderALayer(t *testing.T) {
	a, farA := net.Pipe()
	defer farA.Close()
	ws := &abortRecorder{Conn: a, aborted: make(chan error, 1)}
	boom := errors.New("the other side failed")
	b, farB := net.Pipe()
	defer farB.Close()
	if _, err := Join(layer{layer{ws}}, failingConn{b, boom}, nil); !errors.Is(err, boom) {
		t.Errorf("Join = %v, want %v", err, boom)
	}
	select {
	case err := <-ws.aborted:
		if !errors.Is(err, boom) {
			t.Errorf("the connection under the layers was aborted with %v, want %v", err, boom)
		}
	default:
		t.Error("the connection under the layers was closed, not aborted")
	}
}

// readAfterCloseWrite is a TLS side whose reads wait until the relay has
// half-closed it, so that its CloseWrite (close_notify, a write) is what
// meets its peer's reset, not a read.
type readAfterCloseWrite struct {
	*tls.Conn
	closedWrite chan struct{}
	once        sync.Once
}

func (c *readAfterCloseWrite) Read(p []byte) (int, error) {
	<-c.closedWrite
	return c.Conn.Read(p)
}

// NetConn says what it is over, as a raw leg's buffer does.
func (c *readAfterCloseWrite) NetConn() net.Conn { return c.Conn }

func (c *readAfterCloseWrite) CloseWrite() error {
	err := c.Conn.CloseWrite()
	c.once.Do(func() { close(c.closedWrite) })
	return err
}

// TestJoinHalfCloseTakesAReset: the other side ends cleanly, and the
// half-close Join passes on to a TLS side takes the reset of that side's
// peer (it writes close_notify). The session was cut there: the other
// side's peer must read an error, not a clean end - neither the one that
// closing both after a failed CloseWrite gave it, nor the one that the
// TLS side's read of a bare io.EOF gave it (the half-close made Join
// stop asking the socket, though close_notify sends no FIN).
func TestJoinHalfCloseTakesAReset(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("waits for the socket's state to say reset, which only Linux tells (tcpreset.WasReset)")
	}
	side, peer := flowtest.TLSPair(t)
	tcpreset.Reset(peer)
	for tc := tcpreset.Under(side); !tcpreset.WasReset(tc); {
		runtime.Gosched() // the reset is in when the loopback close returns, or soon after
	}
	a := &readAfterCloseWrite{Conn: side, closedWrite: make(chan struct{})}
	b, far := flowtest.TCPPair(t)
	far.CloseWrite() // b's end: clean, at once
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, nil)
		joined <- err
	}()
	if _, err := io.ReadAll(far); err == nil {
		t.Error("the other side's peer read a clean end of a session cut at the TLS side")
	}
	if err := <-joined; !Cut(err) {
		t.Errorf("Join = %v, want a cut", err)
	}
}
