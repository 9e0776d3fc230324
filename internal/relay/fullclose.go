package relay

import (
	"net"
)

// FullClose wraps c so that the half-close Join passes on closes it fully.
// Use it for the end of a relay whose other end is a wire without
// half-close (Mihini, tcpipe): there, a clean end from the peer means the
// peer's connection is gone in both directions, so the local application
// must see its connection closed, not only its input ended.
//
// The wrapper keeps c's reset on a failed relay (Join cuts a TCP
// connection with a reset) through its Abort method.
func FullClose(c net.Conn) net.Conn { return fullClose{c} }

type fullClose struct{ net.Conn }

// CloseWrite closes the connection in both directions.
func (c fullClose) CloseWrite() error { return c.Conn.Close() }

// Abort cuts the connection off as Join cuts the connection it wraps.
func (c fullClose) Abort(err error) { cut(c.Conn, err) }
