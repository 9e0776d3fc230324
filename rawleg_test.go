package rtcp

import (
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/relay"
	"rtcp/internal/tcpreset"
)

// gatedLeg is a raw leg's TCP connection whose Write, once it has taken a
// reset, waits for release before it returns; and whose NetConn, the way
// tcpreset.Under finds its socket, runs onUnder once if it is set.
type gatedLeg struct {
	*net.TCPConn
	took, release chan struct{}
	onUnder       atomic.Pointer[func()]
}

// Write writes p until the peer's reset comes back.
func (g *gatedLeg) Write(p []byte) (int, error) {
	for {
		n, err := g.TCPConn.Write(p)
		if err != nil {
			close(g.took)
			<-g.release
			return n, err
		}
	}
}

func (g *gatedLeg) NetConn() net.Conn {
	if f := g.onUnder.Swap(nil); f != nil {
		(*f)()
	}
	return g.TCPConn
}

// TestRawLegResetTakenDuringARead: the DP resets a raw leg, a Write takes
// the reset (the Read after it gets a bare io.EOF), and its caller then
// half-closes, all while a Read decides what that io.EOF is. The Read
// must report the reset, not a clean end.
func TestRawLegResetTakenDuringARead(t *testing.T) {
	a, dp := flowtest.TCPPair(t)
	leg := &gatedLeg{TCPConn: a, took: make(chan struct{}), release: make(chan struct{})}
	c := &rawConn{Conn: leg, local: a.LocalAddr(), remote: a.RemoteAddr()}
	defer c.Close()
	dp.SetLinger(0)
	dp.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 1024))
		c.CloseWrite()
		wrote <- err
	}()
	<-leg.took
	var werr error
	// The Read's io.EOF is decided with the Write's reset not yet
	// recorded; it is, and the half-close after it made, as the Read
	// looks for the socket under the leg.
	hook := func() {
		close(leg.release)
		werr = <-wrote
	}
	leg.onUnder.Store(&hook)
	_, err := c.Read(make([]byte, 1))
	if leg.onUnder.Swap(nil) != nil { // the Read did not look: let the Write go
		hook()
	}
	if !tcpreset.Is(werr) {
		t.Fatalf("the Write: %v, want the reset", werr)
	}
	if err == nil || err == io.EOF || !relay.Cut(err) {
		t.Fatalf("the Read after the Write took the reset: %v, want an error", err)
	}
}

// TestRawLegResetTakenByCloseWrite: over TLS, CloseWrite writes (its
// close_notify); when that write takes the DP's reset, the Read after it
// gets a bare io.EOF, which must be reported as the reset.
func TestRawLegResetTakenByCloseWrite(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("waits for the socket's state to say reset, which only Linux tells (tcpreset.WasReset)")
	}
	dp, client := flowtest.TLSPair(t)
	c := &rawConn{Conn: client, local: client.LocalAddr(), remote: client.RemoteAddr()}
	defer c.Close()
	tcpreset.Reset(dp)
	// A reset on loopback is in by the time the close that sent it
	// returns; the socket's state (CLOSE) says so.
	for tc := tcpreset.Under(client); !tcpreset.WasReset(tc); {
		runtime.Gosched()
	}
	if err := c.CloseWrite(); !tcpreset.Is(err) {
		t.Fatalf("CloseWrite: %v, want the reset", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("the Read after CloseWrite took the reset: %v, want an error", err)
	}
}

// resetGate is a raw leg's TCP connection whose Write, when it takes a
// reset, waits for release before it returns.
type resetGate struct {
	*net.TCPConn
	took, release chan struct{}
}

func (g *resetGate) Write(p []byte) (int, error) {
	n, err := g.TCPConn.Write(p)
	if err != nil && tcpreset.Is(err) {
		close(g.took)
		<-g.release
	}
	return n, err
}

func (g *resetGate) NetConn() net.Conn { return g.TCPConn }

// TestRawLegResetTakenByCloseWriteDuringARead: over TLS, CloseWrite's
// close_notify takes the DP's reset while a Read runs, which then gets a
// bare io.EOF before CloseWrite has recorded the reset. The Read must
// report the reset, not a clean end: the socket still tells it, as
// CloseWrite over TLS sends no FIN.
func TestRawLegResetTakenByCloseWriteDuringARead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("waits for the socket's state to say reset, which only Linux tells (tcpreset.WasReset)")
	}
	a, b := flowtest.TCPPair(t)
	leg := &resetGate{TCPConn: b, took: make(chan struct{}), release: make(chan struct{})}
	dp, client := flowtest.TLSOver(t, a, leg)
	c := &rawConn{Conn: client, local: client.LocalAddr(), remote: client.RemoteAddr()}
	defer c.Close()
	tcpreset.Reset(dp)
	for !tcpreset.WasReset(b) {
		runtime.Gosched()
	}
	closed := make(chan error, 1)
	go func() { closed <- c.CloseWrite() }()
	<-leg.took
	_, err := c.Read(make([]byte, 1))
	close(leg.release)
	if cerr := <-closed; !tcpreset.Is(cerr) {
		t.Fatalf("CloseWrite: %v, want the reset", cerr)
	}
	if err == nil || err == io.EOF || !relay.Cut(err) {
		t.Fatalf("a Read while CloseWrite took the reset: %v, want an error", err)
	}
}
