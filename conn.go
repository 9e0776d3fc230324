package rtcp

import (
	"io"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
)

// stream is what a Conn runs on: a session of the JSON transport or a
// wrapped yamux stream.
type stream interface {
	net.Conn
	CloseWrite() error
}

// Conn is an rtcp session: what Dial returns to an indirect client and
// Listener.Accept to an indirect server. It is a full net.Conn, and
// CloseWrite half-closes it.
type Conn struct {
	s       stream
	once    sync.Once
	release func() // frees what the Conn owns (a client's DP connection)
}

var _ net.Conn = (*Conn)(nil)

func init() {
	// Let the relay (the DP, rtcp expose) reach the stream inside a Conn
	// for its fast paths.
	relay.Inner = func(c net.Conn) net.Conn {
		if cc, ok := c.(*Conn); ok {
			if st, ok := cc.s.(*mux.Stream); ok {
				return st
			}
		}
		return nil
	}
}

func newConn(s stream, release func()) *Conn { return &Conn{s: s, release: release} }

// Read reads data from the session. It returns io.EOF once the peer has
// closed or half-closed and all it sent has been read; a session cut off
// by a lost link or a dead peer fails with an error, never io.EOF.
func (c *Conn) Read(b []byte) (int, error) { return c.s.Read(b) }

// Write writes data to the session; b is copied and never kept.
func (c *Conn) Write(b []byte) (int, error) { return c.s.Write(b) }

// Close closes the session in both directions and unblocks every call on
// it. Closing twice is harmless.
func (c *Conn) Close() error {
	err := c.s.Close()
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// Abort ends the session so that the peer's reads fail with err's text
// instead of io.EOF: a session cut off must not look complete. On a raw
// TCP leg (the client's fast mode) the connection is reset.
func (c *Conn) Abort(err error) {
	switch s := c.s.(type) {
	case interface{ Abort(error) }:
		s.Abort(err)
	case *rawConn:
		s.abort()
	default:
		s.Close()
	}
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
}

// WriteTo writes the session's bytes to w until the peer's end (it
// returns nil) or an error: io.Copy(w, c) uses it. On a framed session the
// bytes go from the link straight to w, without a copy through a buffer,
// and to a *net.TCPConn w without waking the caller for each piece.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.s.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.s})
}

// Unwrap returns the TCP connection that carries this session's bytes
// exactly as they are - a client's raw leg, or a data link of TransportTCP
// - or nil when the session is framed (JSON, yamux) or encrypted (TLS). A
// relay may copy between such connections directly (on Linux the kernel
// splices them), as internal/relay and the rtcp command do; use Read,
// Write, CloseWrite and Close of the Conn for everything else.
func (c *Conn) Unwrap() *net.TCPConn {
	if rc, ok := c.s.(*rawConn); ok {
		tc, _ := rc.Conn.(*net.TCPConn)
		return tc
	}
	return nil
}

// CloseWrite shuts down the writing side: the peer reads io.EOF after the
// data already written and can still write back.
func (c *Conn) CloseWrite() error { return c.s.CloseWrite() }

// LocalAddr returns the local end: for an indirect server "name@DP".
func (c *Conn) LocalAddr() net.Addr { return c.s.LocalAddr() }

// RemoteAddr returns the remote end: for an indirect client "server@DP",
// for an indirect server "client@client-address".
func (c *Conn) RemoteAddr() net.Addr { return c.s.RemoteAddr() }

func (c *Conn) SetDeadline(t time.Time) error      { return c.s.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.s.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }
