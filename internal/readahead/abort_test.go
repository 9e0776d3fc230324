package readahead

import (
	"errors"
	"net"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// abortConn is a connection with an Abort of its own (a WebSocket's).
type abortConn struct {
	net.Conn
	aborted error
}

func (c *abortConn) Abort(err error) { c.aborted = err; c.Conn.Close() }

// TestAbort: Abort of a connection read ahead ends it as the connection
// under it ends when cut: a TCP connection with a reset, not a FIN, and a
// connection with an Abort of its own by that Abort.
func TestAbort(t *testing.T) {
	cut := errors.New("the other side failed")
	a, b := flowtest.TCPPair(t)
	New(a, nil, 0).Abort(cut)
	if _, err := b.Read(make([]byte, 1)); !tcpreset.Is(err) {
		t.Errorf("the peer of a TCP connection read ahead and aborted read %v, want a reset", err)
	}

	p, q := net.Pipe()
	defer q.Close()
	ac := &abortConn{Conn: p}
	New(ac, nil, 0).Abort(cut)
	if ac.aborted != cut {
		t.Errorf("the connection under it was aborted with %v, want %v", ac.aborted, cut)
	}
}
