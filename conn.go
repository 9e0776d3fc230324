package rtcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/sockio"
	"rtcp/internal/tcpreset"
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
	release func()  // frees what the Conn owns (a client's DP connection)
	answer  *answer // the client still waits for it (ListenConfig.ManualAck); else nil
}

var _ net.Conn = (*Conn)(nil)

func newConn(s stream, release func()) *Conn { return &Conn{s: s, release: release} }

// newPendingConn returns a server's session that its client waits for:
// send answers the client, accepting the session (nil) or refusing it.
// After a refusal the Conn closes s. A session left unanswered for
// defaultHandshakeTimeout is refused: the DP has given up on it by then
// (with its default HandshakeTimeout), and on a link whose answers go in
// order it would hold up every session after it.
func newPendingConn(s stream, send func(refusal error) error) *Conn {
	c := &Conn{s: s, answer: &answer{send: send}}
	c.answer.mu.Lock()
	c.answer.timer = time.AfterFunc(defaultHandshakeTimeout, func() { c.Ack(errNoAnswer) })
	c.answer.mu.Unlock()
	return c
}

// answer is a session's answer to its client, sent once.
type answer struct {
	once    sync.Once
	send    func(refusal error) error
	mu      sync.Mutex  // guards timer
	timer   *time.Timer // refuses the session if nothing else answers it
	err     error       // what send returned
	refused bool
}

// Errors of Ack.
var (
	errAnswered    = errors.New("rtcp: the session has been answered already; Close or Abort it instead")
	errNotAccepted = errors.New("rtcp: the server closed the session without accepting it")
	errNoAnswer    = fmt.Errorf("rtcp: the server did not answer the session within %v", defaultHandshakeTimeout)
)

// Ack answers the client of a session that Accept returned before
// answering it (ListenConfig.ManualAck): nil accepts the session, and the
// client's Dial returns; an error refuses it, the client's Dial fails with
// the error's text (on the wire, Ack X=-1 with that reason), and the Conn
// is closed. The first Read, Write, CloseWrite, WriteTo, Unwrap or NetConn accepts
// the session too, and Close or Abort refuses it.
//
// Ack(nil) on a session that is open already does nothing; Ack with an
// error then fails, since the session can no longer be refused.
func (c *Conn) Ack(refusal error) error {
	a := c.answer
	if a == nil {
		if refusal != nil {
			return errAnswered
		}
		return nil
	}
	first := false
	a.once.Do(func() {
		first = true
		a.mu.Lock()
		a.timer.Stop()
		a.mu.Unlock()
		a.err = a.send(refusal)
		a.refused = refusal != nil
	})
	switch {
	case first && refusal != nil:
		c.close()
		return a.err
	case refusal != nil:
		return errAnswered
	case a.refused:
		return net.ErrClosed
	}
	return a.err // of the first accept, if this was not it
}

// open accepts the session if it is still waiting for its answer.
func (c *Conn) open() error {
	if c.answer != nil {
		if err := c.Ack(nil); err != nil {
			return &net.OpError{Op: "accept", Net: "rtcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
		}
	}
	return nil
}

// Read reads data from the session. It returns io.EOF once the peer has
// closed or half-closed and all it sent has been read; a session cut off
// by a lost link or a dead peer fails with an error, never io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.open(); err != nil {
		return 0, err
	}
	return c.s.Read(b)
}

// Write writes data to the session; b is copied and never kept.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.open(); err != nil {
		return 0, err
	}
	return c.s.Write(b)
}

// Close closes the session in both directions and unblocks every call on
// it. Closing twice is harmless.
func (c *Conn) Close() error {
	if c.answer != nil && c.Ack(errNotAccepted) == nil {
		return nil // refused, and closed
	}
	return c.close()
}

func (c *Conn) close() error {
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
	if c.answer != nil && c.Ack(err) == nil {
		return // refused with err, and closed
	}
	abortStream(c.s, err)
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
}

// abortStream ends s so that its peer's reads fail.
func abortStream(s stream, err error) {
	switch s := s.(type) {
	case interface{ Abort(error) }:
		s.Abort(err)
	case *rawConn:
		s.abort(err)
	default:
		s.Close()
	}
}

// WriteTo writes the session's bytes to w until the peer's end (it
// returns nil) or an error: io.Copy(w, c) uses it. On a framed session the
// bytes go from the link straight to w, without a copy through a buffer,
// and to a *net.TCPConn w without waking the caller for each piece.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if err := c.open(); err != nil {
		return 0, err
	}
	if wt, ok := c.s.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	// A *net.TCPConn's ReadFrom would copy through a buffer too (the
	// source is no socket); sockio writes it without the runtime's
	// bookkeeping for a call that may block.
	return io.Copy(sockio.WriterOf(w), struct{ io.Reader }{c.s})
}

// NetConn returns the stream that carries this session on a multiplexed
// link (TransportJSON, TransportYamux), or nil for a session that has a
// TCP connection of its own (see Unwrap). A relay such as Join moves the
// stream's bytes with its fast paths: from the link's reader straight to
// the destination, and on Linux spliced from a TCP source into the link.
// Reading or writing the stream is reading or writing the session.
func (c *Conn) NetConn() net.Conn {
	if c.open() != nil {
		return nil
	}
	if st, ok := c.s.(*mux.Stream); ok {
		return st
	}
	return nil
}

// Unwrap returns the TCP connection that carries this session's bytes
// exactly as they are - a client's raw leg, a data link of TransportTCP
// - or nil when the session is framed (JSON, yamux, a session that may
// move to a direct path, moved or not), encrypted (TLS), or when bytes
// of the session came with the link's handshake and wait in a buffer
// (a data link that read the client's first bytes with the DP's
// Connect, a client's raw leg that read the server's first bytes with
// the DP's Ack: Read returns them first) until TakeBuffered takes them.
// A relay may copy between such connections directly (on Linux the
// kernel splices them), as internal/relay and the rtcp command do; use
// Read, Write, CloseWrite and Close of the Conn for everything else.
func (c *Conn) Unwrap() *net.TCPConn {
	if c.open() != nil {
		return nil
	}
	if rc, ok := c.s.(*rawConn); ok {
		inner := rc.Conn
		if lc, ok := inner.(*lateConn); ok {
			inner = lc.conn()
		}
		if bc, ok := inner.(*bufferedConn); ok {
			return bc.Unwrap()
		}
		return tcpreset.Of(inner) // a TCP connection, or a wrapper that adds bookkeeping only
	}
	return nil
}

// TakeBuffered returns the bytes of the session that came with its
// link's handshake and that Read has not returned yet (a data link that
// read the client's first bytes with the DP's Connect, a client's raw
// leg that read the server's first bytes with the DP's Ack), and hands
// them to the caller, who must deliver them before anything Read returns
// after: Read goes on after them, and Unwrap, which returns nil while
// such bytes wait, returns the TCP connection that carries the rest as
// it is. It returns nil when none wait. A relay that moves the bytes
// between connections itself (Join, internal/relay) calls it before its
// first Read, so that it can move all the rest; it must not be called
// concurrently with Read.
func (c *Conn) TakeBuffered() []byte {
	if c.open() != nil {
		return nil
	}
	rc, ok := c.s.(*rawConn)
	if !ok {
		return nil
	}
	inner := rc.Conn
	if lc, ok := inner.(*lateConn); ok {
		inner = lc.conn()
	}
	if bc, ok := inner.(*bufferedConn); ok {
		return bc.TakeBuffered()
	}
	return nil
}

// CloseWrite shuts down the writing side: the peer reads io.EOF after the
// data already written and can still write back.
func (c *Conn) CloseWrite() error {
	if err := c.open(); err != nil {
		return err
	}
	return c.s.CloseWrite()
}

// LocalAddr returns the local end: for an indirect server "name@DP".
func (c *Conn) LocalAddr() net.Addr { return c.s.LocalAddr() }

// RemoteAddr returns the remote end: for an indirect client "server@DP",
// for an indirect server "client@client-address".
func (c *Conn) RemoteAddr() net.Addr { return c.s.RemoteAddr() }

func (c *Conn) SetDeadline(t time.Time) error      { return c.setDeadline(true, true, t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.setDeadline(true, false, t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(false, true, t) }

func (c *Conn) setDeadline(read, write bool, t time.Time) error {
	return setDeadlines(c.s, read, write, t)
}
