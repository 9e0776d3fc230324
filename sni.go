package rtcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// maxClientHello bounds the bytes the SNI door reads for a ClientHello: a
// browser's is under 2 KiB, one with two post-quantum key shares about 4.
const maxClientHello = 8 << 10

// ServeSNI accepts TLS connections on l and carries each, untouched, to
// the server that its ClientHello names: a server name indication (SNI)
// of <name>.<domain>, any case, reaches the server registered as name,
// which terminates TLS itself (tls.NewListener over its Listener, with a
// certificate for <name>.<domain>). The DP holds no certificate and reads
// nothing but the ClientHello (at most 8 KiB, within HandshakeTimeout),
// which it passes on as it came. Only names that are one DNS label, in
// lower case, are reachable this way.
//
// A hello that names no server under domain, or none that is registered,
// is answered with a TLS alert (unrecognized_name); one the Policy
// refuses (the name's Allow list: TLS clients have no key here), with
// access_denied; bytes that are not a ClientHello, with decode_error or
// nothing. A client's session counts, and is bounded, like a port-mode
// connection's. ServeSNI returns as Serve does.
func (dp *DiscoverPoint) ServeSNI(l net.Listener, domain string) error {
	domain = webDomain(domain)
	if domain == "" {
		l.Close()
		return errors.New("rtcp: ServeSNI needs a domain: <name>.<domain> reaches the server name")
	}
	return dp.serve(l, func(c net.Conn) bool {
		dp.serveSNI(c, domain)
		return false
	})
}

// ListenAndServeSNI listens on the TCP address addr and calls ServeSNI.
func (dp *DiscoverPoint) ListenAndServeSNI(addr, domain string) error {
	dp.init()
	if dp.closing() {
		return ErrDiscoverPointClosed
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return dp.ServeSNI(l, domain)
}

// serveSNI carries a TLS connection to the server its hello names.
func (dp *DiscoverPoint) serveSNI(c net.Conn, domain string) {
	c.SetReadDeadline(time.Now().Add(dp.HandshakeTimeout))
	hello, host, err := readClientHello(c, maxClientHello)
	var alert byte = alertDecodeError
	var name string
	if err == nil {
		alert = alertUnrecognizedName
		if host == "" {
			err = fmt.Errorf("rtcp: the TLS ClientHello names no server (no SNI); connect to <name>.%s", domain)
		} else {
			name, err = webName(host, domain)
		}
	}
	if err != nil {
		dp.refused(refusedHandshake)
		dp.log().Info("rtcp: TLS connection refused", "remote", c.RemoteAddr(), "reason", err)
		if !errors.Is(err, errNotTLS) {
			writeAlert(c, alert)
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	replayed := newBufferedConn(c, hello)
	dp.serveSession(sessionRequest{conn: replayed, name: name, addr: c.RemoteAddr(), answer: func(err error) bool {
		switch {
		case err == nil:
		case errors.Is(err, ErrNoServer):
			writeAlert(c, alertUnrecognizedName)
		case errors.Is(err, ErrUnauthorized):
			writeAlert(c, alertAccessDenied)
		default:
			writeAlert(c, alertInternalError)
		}
		return true
	}})
}

// TLS alerts (RFC 8446, section 6).
const (
	alertAccessDenied     = 49
	alertDecodeError      = 50
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

// writeAlert sends a fatal TLS alert to the client c, which is about to
// be closed.
func writeAlert(c net.Conn, desc byte) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte{recordTypeAlert, 3, 3, 0, 2, 2, desc})
}

// TLS record and handshake types.
const (
	recordTypeAlert     = 21
	recordTypeHandshake = 22
	typeClientHello     = 1
	maxRecord           = 16384
)

// errNotTLS is the error of bytes that do not start a TLS handshake.
var errNotTLS = errors.New("rtcp: not a TLS connection")

// readClientHello reads a TLS ClientHello from r, in one or more records,
// reading at most max bytes. It returns the bytes read, and the host name
// of the hello's server_name extension ("" if it has none).
func readClientHello(r io.Reader, max int) (raw []byte, host string, err error) {
	var hs []byte // the handshake messages' bytes, out of their records
	for {
		start := len(raw)
		if raw, err = readMore(r, raw, 5); err != nil {
			return raw, "", fmt.Errorf("rtcp: reading a TLS ClientHello: %w", err)
		}
		hdr := raw[start:]
		if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
			return raw, "", fmt.Errorf("%w: it starts with % x, not a TLS handshake record", errNotTLS, hdr[:3])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecord {
			return raw, "", fmt.Errorf("rtcp: TLS record of %d bytes; want 1 to %d", n, maxRecord)
		}
		if len(raw)+n > max {
			return raw, "", fmt.Errorf("rtcp: the TLS ClientHello is longer than %d bytes, the most the DP reads", max)
		}
		if raw, err = readMore(r, raw, n); err != nil {
			return raw, "", fmt.Errorf("rtcp: reading a TLS ClientHello: %w", err)
		}
		hs = append(hs, raw[len(raw)-n:]...)
		if len(hs) < 4 {
			continue
		}
		if hs[0] != typeClientHello {
			return raw, "", fmt.Errorf("rtcp: TLS handshake message of type %d; want a ClientHello (1)", hs[0])
		}
		mlen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if 4+mlen > max {
			return raw, "", fmt.Errorf("rtcp: the TLS ClientHello is %d bytes, more than the %d the DP reads", 4+mlen, max)
		}
		if len(hs) >= 4+mlen {
			host, err := parseClientHello(hs[4 : 4+mlen])
			return raw, host, err
		}
	}
}

// readMore reads n more bytes from r onto b.
func readMore(r io.Reader, b []byte, n int) ([]byte, error) {
	l := len(b)
	b = append(b, make([]byte, n)...)
	m, err := io.ReadFull(r, b[l:])
	if err == io.EOF && l > 0 {
		err = io.ErrUnexpectedEOF
	}
	return b[:l+m], err
}

// parseClientHello returns the host name in the server_name extension of
// the ClientHello body b (RFC 8446, section 4.1.2; RFC 6066, section 3),
// or "" if it has none.
func parseClientHello(b []byte) (string, error) {
	bad := func(what string) (string, error) {
		return "", fmt.Errorf("rtcp: malformed TLS ClientHello: %s", what)
	}
	s := helloBytes(b)
	var sid, suites, methods, exts helloBytes
	if !s.skip(2+32) || !s.vec8(&sid) || !s.vec16(&suites) || !s.vec8(&methods) {
		return bad("truncated before its extensions")
	}
	if len(s) == 0 {
		return "", nil // no extensions
	}
	if !s.vec16(&exts) || len(s) != 0 {
		return bad("bad extensions block")
	}
	for len(exts) > 0 {
		var typ uint16
		var data helloBytes
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return bad("truncated extension")
		}
		if typ != 0 { // server_name
			continue
		}
		var list helloBytes
		if !data.vec16(&list) || len(data) != 0 {
			return bad("bad server_name extension")
		}
		for len(list) > 0 {
			var kind uint8
			var name helloBytes
			if !list.u8(&kind) || !list.vec16(&name) {
				return bad("bad server_name list")
			}
			if kind != 0 { // host_name
				continue
			}
			if !hostName(name) {
				return bad(fmt.Sprintf("server name %q is not a host name", []byte(name)))
			}
			return string(name), nil
		}
		return "", nil
	}
	return "", nil
}

// hostName reports whether b can be a DNS host name: 1 to 253 letters,
// digits, '-', '_' and '.', not ending with a dot (RFC 6066).
func hostName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 || b[len(b)-1] == '.' {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// helloBytes is the unread part of a ClientHello, read front to back.
type helloBytes []byte

func (s *helloBytes) skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

func (s *helloBytes) u8(v *uint8) bool {
	if len(*s) < 1 {
		return false
	}
	*v = (*s)[0]
	*s = (*s)[1:]
	return true
}

func (s *helloBytes) u16(v *uint16) bool {
	if len(*s) < 2 {
		return false
	}
	*v = uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return true
}

// vec8 and vec16 read a vector with a length of 1 or 2 bytes.
func (s *helloBytes) vec8(v *helloBytes) bool {
	var n uint8
	return s.u8(&n) && s.vec(int(n), v)
}

func (s *helloBytes) vec16(v *helloBytes) bool {
	var n uint16
	return s.u16(&n) && s.vec(int(n), v)
}

func (s *helloBytes) vec(n int, v *helloBytes) bool {
	if len(*s) < n {
		return false
	}
	*v = (*s)[:n]
	*s = (*s)[n:]
	return true
}
