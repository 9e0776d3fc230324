package rtcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"rtcp/internal/tcpreset"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2)
// tells a TCP service the address of the client that a proxy carries to
// it, in a header before the client's first byte. rtcp writes it toward a
// server's local service (WriteProxyHeader, rtcp expose -proxy-protocol)
// and reads it from a load balancer in front of a DP
// (DiscoverPoint.ProxyProtocolFrom).

// proxyV2Sig starts every version 2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxProxyV1 is the longest version 1 header, CRLF included (the spec's
// 107 bytes).
const maxProxyV1 = 107

// WriteProxyHeader writes a PROXY protocol header of version (1: text,
// 2: binary) to w, the connection to a local service that c's bytes are
// about to be carried to: its source is the address of c's client (for a
// session accepted from an rtcp Listener, the client's address as the DP
// saw it, RemoteAddr's Addr), its destination c's local address where
// that is an IP address (the DP's), else the unspecified address. A
// client whose address is not an IP address and port (one another kind
// of door gave without one) is sent as UNKNOWN (version 1) or with no
// address (version 2, AF_UNSPEC): the service then uses the
// connection's own. Write it before anything else; nginx
// (listen ... proxy_protocol), HAProxy (accept-proxy) and Go servers with
// github.com/pires/go-proxyproto read it.
func WriteProxyHeader(w io.Writer, version int, c net.Conn) error {
	b, err := AppendProxyHeader(nil, version, c.RemoteAddr(), c.LocalAddr())
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendProxyHeader appends the PROXY protocol header of version (1 or 2)
// for a connection from src to dst, as WriteProxyHeader describes, to b.
func AppendProxyHeader(b []byte, version int, src, dst net.Addr) ([]byte, error) {
	s, sok := addrPortOf(src)
	d, dok := addrPortOf(dst)
	if sok {
		s = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
		switch {
		case !dok:
			d = netip.AddrPortFrom(unspecified(s.Addr()), 0)
		case s.Addr().Is4() && !d.Addr().Unmap().Is4():
			d = netip.AddrPortFrom(netip.IPv4Unspecified(), d.Port())
		case s.Addr().Is4():
			d = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
		case d.Addr().Is4():
			d = netip.AddrPortFrom(netip.AddrFrom16(d.Addr().As16()), d.Port())
		}
	}
	switch version {
	case 1:
		if !sok {
			return append(b, "PROXY UNKNOWN\r\n"...), nil
		}
		fam := "TCP4"
		if s.Addr().Is6() {
			fam = "TCP6"
		}
		return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", fam, s.Addr().WithZone(""), d.Addr().WithZone(""), s.Port(), d.Port()), nil
	case 2:
		b = append(b, proxyV2Sig...)
		b = append(b, 0x21) // version 2, PROXY
		switch {
		case !sok:
			return append(b, 0x00, 0, 0), nil // AF_UNSPEC, no address
		case s.Addr().Is4():
			b = append(b, 0x11, 0, 12) // TCP over IPv4
		default:
			b = append(b, 0x21, 0, 36) // TCP over IPv6
		}
		b = append(b, s.Addr().AsSlice()...)
		b = append(b, d.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, s.Port())
		return binary.BigEndian.AppendUint16(b, d.Port()), nil
	}
	return nil, fmt.Errorf("rtcp: PROXY protocol version %d: use 1 (text) or 2 (binary)", version)
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// addrPortOf is a's IP address and port, if it has them.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var s string
	switch a := a.(type) {
	case nil:
		return netip.AddrPort{}, false
	case *net.TCPAddr:
		ap := a.AddrPort()
		return ap, ap.IsValid()
	case *Addr:
		s = a.Addr
	default:
		s = a.String()
	}
	ap, err := netip.ParseAddrPort(s)
	return ap, err == nil
}

// errNoProxyHeader is the error of a connection from a balancer that
// should send a PROXY header and sent something else.
var errNoProxyHeader = errors.New("rtcp: want a PROXY protocol header (v1 or v2) first from this address (ProxyProtocolFrom, -proxy-protocol-from); got other bytes")

// readProxyHeader reads one PROXY protocol header (version 1 or 2) from r,
// exactly: no byte after it. It returns the client's address, or nil for
// a header that carries none (v1 UNKNOWN, v2 LOCAL or AF_UNSPEC, a
// protocol other than TCP), whose connection is then its own.
func readProxyHeader(r io.Reader) (net.Addr, error) {
	// 12 bytes: the v2 signature, and fewer than the shortest v1 header
	// ("PROXY UNKNOWN\r\n"), so that a server-speaks-first protocol
	// behind a v1 header does not wait for bytes that never come.
	var buf [maxProxyV1]byte
	if _, err := io.ReadFull(r, buf[:12]); err != nil {
		return nil, fmt.Errorf("rtcp: reading a PROXY protocol header: %w", unexpectedEOF(err))
	}
	if bytes.Equal(buf[:12], proxyV2Sig) {
		return readProxyV2(r)
	}
	if string(buf[:6]) != "PROXY " {
		return nil, errNoProxyHeader
	}
	n := 12
	for buf[n-1] != '\n' {
		if n == len(buf) {
			return nil, fmt.Errorf("rtcp: PROXY protocol v1 header longer than %d bytes", maxProxyV1)
		}
		want := 2 // "\r\n" at least
		if buf[n-1] == '\r' {
			want = 1
		}
		want = min(want, len(buf)-n)
		if _, err := io.ReadFull(r, buf[n:n+want]); err != nil {
			return nil, fmt.Errorf("rtcp: reading a PROXY protocol v1 header: %w", unexpectedEOF(err))
		}
		n += want
	}
	return parseProxyV1(string(buf[:n]))
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseProxyV1 parses a whole v1 line, CRLF included.
func parseProxyV1(line string) (net.Addr, error) {
	body, ok := strings.CutSuffix(line, "\r\n")
	if !ok {
		return nil, fmt.Errorf("rtcp: PROXY protocol v1 header %q does not end in CRLF", line)
	}
	f := strings.Split(body, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil // the rest is to be ignored
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, fmt.Errorf("rtcp: bad PROXY protocol v1 header %q: want PROXY TCP4|TCP6 SRC DST SPORT DPORT", body)
	}
	var addrs [2]netip.Addr
	for i, s := range f[2:4] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is4() != (f[1] == "TCP4") {
			return nil, fmt.Errorf("rtcp: bad PROXY protocol v1 header %q: %q is not an %s address", body, s, f[1])
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[4:6] {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || (len(s) > 1 && s[0] == '0') {
			return nil, fmt.Errorf("rtcp: bad PROXY protocol v1 header %q: %q is not a port", body, s)
		}
		ports[i] = uint16(p)
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addrs[0], ports[0])), nil
}

// readProxyV2 reads the rest of a v2 header, its signature read.
func readProxyV2(r io.Reader) (net.Addr, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("rtcp: reading a PROXY protocol v2 header: %w", unexpectedEOF(err))
	}
	if h[0]>>4 != 2 {
		return nil, fmt.Errorf("rtcp: PROXY protocol v2 header of version %d", h[0]>>4)
	}
	cmd := h[0] & 0xf
	if cmd > 1 {
		return nil, fmt.Errorf("rtcp: PROXY protocol v2 header with unknown command %d", cmd)
	}
	// The length is at most 65535: the addresses and TLVs, read and
	// dropped but for the addresses.
	body := make([]byte, binary.BigEndian.Uint16(h[2:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("rtcp: reading a PROXY protocol v2 header: %w", unexpectedEOF(err))
	}
	if cmd == 0 { // LOCAL: the balancer's own connection (a health check)
		return nil, nil
	}
	var a netip.Addr
	var port []byte
	switch h[1] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return nil, fmt.Errorf("rtcp: PROXY protocol v2 header: %d bytes of IPv4 addresses, want 12", len(body))
		}
		a = netip.AddrFrom4([4]byte(body[:4]))
		port = body[8:10]
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return nil, fmt.Errorf("rtcp: PROXY protocol v2 header: %d bytes of IPv6 addresses, want 36", len(body))
		}
		a = netip.AddrFrom16([16]byte(body[:16]))
		port = body[32:34]
	default: // AF_UNSPEC, AF_UNIX, UDP: no TCP client to give
		return nil, nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, binary.BigEndian.Uint16(port))), nil
}

// proxiedConn is a connection from a load balancer whose PROXY header
// named the client: RemoteAddr is the client's address.
type proxiedConn struct {
	net.Conn
	remote net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite passes a half-close on, so that it crosses the relay.
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Unwrap lets the relay splice the TCP connection: the header is read to
// its last byte, and nothing after it.
func (c *proxiedConn) Unwrap() *net.TCPConn { return tcpreset.Of(c.Conn) }

// fromBalancer reports whether c comes from an address of
// ProxyProtocolFrom.
func (dp *DiscoverPoint) fromBalancer(c net.Conn) bool {
	if len(dp.ProxyProtocolFrom) == 0 {
		return false
	}
	ap, ok := addrPortOf(c.RemoteAddr())
	if !ok {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range dp.ProxyProtocolFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// readProxied reads the PROXY header of c, from a balancer, within
// HandshakeTimeout, and returns c as the client's connection: its
// RemoteAddr is the client's, or c's own for a header that names none
// (a balancer's health check). A connection whose header is missing or
// bad is refused: counted, logged, and the error returned; the caller
// closes it.
func (dp *DiscoverPoint) readProxied(c net.Conn) (net.Conn, error) {
	c.SetReadDeadline(time.Now().Add(dp.HandshakeTimeout))
	client, err := readProxyHeader(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		dp.refused(refusedHandshake)
		dp.log().Info("rtcp: connection from a load balancer refused", "remote", c.RemoteAddr(), "reason", err)
		return nil, err
	}
	if client == nil {
		return c, nil
	}
	return &proxiedConn{Conn: c, remote: client}, nil
}

// proxiedHandler is handle for the connections of a door: those from
// ProxyProtocolFrom read their PROXY header first.
func (dp *DiscoverPoint) proxiedHandler(handle func(net.Conn) bool) func(net.Conn) bool {
	if len(dp.ProxyProtocolFrom) == 0 {
		return handle
	}
	return func(c net.Conn) bool {
		if !dp.fromBalancer(c) {
			return handle(c)
		}
		pc, err := dp.readProxied(c)
		if err != nil {
			return false
		}
		return handle(pc)
	}
}

// ProxyProtocolListener returns l, whose connections from
// ProxyProtocolFrom give the client's address from their PROXY header as
// RemoteAddr: for the http.Server of an HTTPDoor, so that the Policy and
// the X-Forwarded-For header see the client rather than the balancer.
// (Serve, ServePort and ServeSNI do this themselves.) The header is read
// on the connection's first Read or RemoteAddr (http.Server asks for it
// in the connection's own goroutine), within HandshakeTimeout; a
// connection without a valid one fails its reads, and the server closes
// it. With no ProxyProtocolFrom, it returns l.
func (dp *DiscoverPoint) ProxyProtocolListener(l net.Listener) net.Listener {
	dp.init()
	if len(dp.ProxyProtocolFrom) == 0 {
		return l
	}
	return &proxiedListener{Listener: l, dp: dp}
}

type proxiedListener struct {
	net.Listener
	dp *DiscoverPoint
}

func (l *proxiedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.dp.fromBalancer(c) {
		return c, err
	}
	return &lazyProxiedConn{Conn: c, dp: l.dp}, nil
}

// lazyProxiedConn is a connection from a balancer whose PROXY header is
// read on its first Read or RemoteAddr.
type lazyProxiedConn struct {
	net.Conn
	dp     *DiscoverPoint
	once   sync.Once
	remote net.Addr // the client's, once read; nil: the connection's own
	err    error    // the header's, once read

	mu       sync.Mutex // guards deadline
	deadline time.Time  // the read deadline last set, put back after the header
}

func (c *lazyProxiedConn) header() error {
	c.once.Do(func() {
		pc, err := c.dp.readProxied(c.Conn)
		c.mu.Lock()
		c.Conn.SetReadDeadline(c.deadline)
		c.mu.Unlock()
		if err != nil {
			c.err = err
			c.Conn.Close()
			return
		}
		if pc != c.Conn {
			c.remote = pc.RemoteAddr()
		}
	})
	return c.err
}

func (c *lazyProxiedConn) Read(b []byte) (int, error) {
	if err := c.header(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *lazyProxiedConn) RemoteAddr() net.Addr {
	if c.header() == nil && c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *lazyProxiedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

func (c *lazyProxiedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}
