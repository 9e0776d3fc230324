package rtcp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
)

// wsLike is a connection cut with an Abort of its own (a WebSocket,
// dropped with no close frame, which its peer reads as an error, where
// Close's normal closure is read as the end); it records the Abort.
type wsLike struct {
	net.Conn
	aborted chan error
}

func (c *wsLike) Abort(err error) {
	c.aborted <- err
	c.Conn.Close()
}

// TestDataLinkAbortReachesTheConnUnderTLS: a data link over TLS over a
// connection with its own Abort (a server's link to a DP's ServeConn
// door over a WebSocket, the DP with a TLSConfig) is cut with that Abort
// through releaseConn and pacedConn, not with TLS's clean goodbye.
func TestDataLinkAbortReachesTheConnUnderTLS(t *testing.T) {
	boom := errors.New("the client's side failed")
	for _, paced := range []bool{false, true} {
		a, far := net.Pipe()
		defer far.Close()
		ws := &wsLike{Conn: a, aborted: make(chan error, 1)}
		var c net.Conn = &releaseConn{Conn: tls.Server(ws, &tls.Config{}), release: func() {}}
		if paced {
			c = &pacedConn{Conn: c, cancel: context.CancelFunc(func() {})}
		}
		c.(interface{ Abort(error) }).Abort(boom)
		select {
		case err := <-ws.aborted:
			if !errors.Is(err, boom) {
				t.Errorf("paced %v: aborted with %v, want %v", paced, err, boom)
			}
		default:
			t.Errorf("paced %v: the connection under TLS was closed, not aborted", paced)
		}
	}
}
