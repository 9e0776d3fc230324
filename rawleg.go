package rtcp

import (
	"io"
	"net"

	"rtcp/internal/relay"
	"rtcp/internal/tcpreset"
)

// A raw leg (a client's TransportYamux session, a data link of
// TransportTCP) is a bare TCP connection: the only way to tell its peer "cut
// off" rather than "done" is a reset. So, while the session runs, a raw
// leg is set to reset when it is closed - by the kernel too, if the process
// dies - and only a Close or CloseWrite of the session itself ends it with
// a FIN.

// resetOnDeath makes c, or the TCP connection under it, reset when it is
// closed other than by rawConn.Close or CloseWrite.
func resetOnDeath(c net.Conn) {
	tcpreset.SetReset(tcpreset.Under(c), true)
}

// Read reads the session's bytes. Linux reports a reset to one call only:
// if a Write took it, the next Read sees a bare io.EOF, which would make a
// cut-off session look complete. Once a Write has met a reset, io.EOF is
// that reset.
//
// A Write may take the reset while this Read runs, and its caller may
// then CloseWrite: so Read asks the socket first, then whether it was
// half-closed (tcpreset.WasReset's order), and only then whether a Write
// met a reset. A half-close seen here comes after that Write's record of
// the reset, which is then seen too; asked first, the record could be
// missed, and the half-close then hide the socket's reset.
//
// Over TLS, CloseWrite sends close_notify and no FIN, so it leaves the
// socket's state to be asked: that very write may take the reset while
// this Read runs, before CloseWrite records it.
func (c *rawConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		if tc := tcpreset.Under(c.Conn); tc != nil && tcpreset.WasReset(tc) && !c.fin.Load() {
			return n, &net.OpError{Op: "read", Net: "tcp", Source: tc.LocalAddr(), Addr: tc.RemoteAddr(), Err: tcpreset.ErrReset}
		}
		if werr := c.reset.Load(); werr != nil {
			return n, *werr
		}
	}
	return n, err
}

func (c *rawConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && tcpreset.Is(err) {
		c.reset.CompareAndSwap(nil, &err)
	}
	return n, err
}

// Close ends the session cleanly: the peer reads io.EOF.
func (c *rawConn) Close() error {
	tcpreset.SetReset(tcpreset.Under(c.Conn), false)
	return c.Conn.Close()
}

// abort ends the session so that the peer's reads fail: with a reset,
// under TLS before the TLS layer could say a clean goodbye (close_notify),
// which the DP would read as the end; a leg over a connection that is cut
// otherwise (a WebSocket, dropped with no close frame) is cut so
// (relay.CutOff).
func (c *rawConn) abort(err error) {
	relay.CutOff(c.Conn, err)
}
