package rtcp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// TLS runs under the Plan5 protocol, the way HTTPS runs under HTTP: a peer
// with a TLSConfig does the TLS handshake right after the TCP connection
// is up, and the Aloha exchange, the JSON messages, a yamux session, a raw
// client leg or a data link then run inside it unchanged.

// dialDP dials addr and, with cfg, runs the client side of a TLS handshake
// that ctx bounds (defaultHandshakeTimeout if ctx has no deadline). A cfg
// without ServerName gets the host of addr, as tls.Dial does.
func dialDP(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), cfg *tls.Config, addr string) (net.Conn, error) {
	c, err := dialTCP(ctx, dial, addr)
	if err != nil || cfg == nil {
		return c, err
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHandshakeTimeout)
		defer cancel()
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("rtcp: TLS handshake with %s failed: %w", addr, err)
	}
	return tc, nil
}

// startTLS runs the DP's side of the TLS handshake on c, under the
// deadline the caller set, if the DP has a TLSConfig.
func (dp *DiscoverPoint) startTLS(c net.Conn) (net.Conn, error) {
	if dp.TLSConfig == nil {
		return c, nil
	}
	tc := tls.Server(c, dp.TLSConfig)
	if err := tc.HandshakeContext(dp.ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// netConn returns the connection under a TLS connection, or c itself: the
// one the DP tracks.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// tlsBinding returns keying material exported from c's TLS session
// (RFC 5705), the same at both ends of one TLS connection and different on
// any other, or nil if c is not TLS. A proof that covers it cannot be
// relayed to the DP over another connection by a man in the middle.
func tlsBinding(c net.Conn) []byte {
	if bc, ok := c.(*bufferedConn); ok {
		c = bc.Conn
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial("EXPERIMENTAL rtcp auth v1", nil, 32)
	if err != nil {
		return nil
	}
	return b
}

// serveTLS is serveConn behind the DP's TLS handshake, if it has a
// TLSConfig.
func (dp *DiscoverPoint) serveTLS(c net.Conn) (kept bool) {
	if !dp.enterHandshake(c) {
		return false
	}
	defer dp.handshakeOver(c)
	if dp.TLSConfig == nil {
		return dp.serveConn(c)
	}
	c.SetDeadline(time.Now().Add(dp.HandshakeTimeout))
	tc, err := dp.startTLS(c)
	if err != nil {
		dp.refused(refusedTLSHandshake)
		dp.log().Info("rtcp: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
		return false
	}
	return dp.serveConn(tc)
}
