package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"rtcp"
)

// readProxyHeaderStrict parses one PROXY protocol header of version from
// r, as strictly as the spec (proxy-protocol.txt) words it, and returns
// the source address.
func readProxyHeaderStrict(r *bufio.Reader, version int) (netip.AddrPort, error) {
	if version == 1 {
		line, err := r.ReadString('\n')
		if err != nil {
			return netip.AddrPort{}, err
		}
		if len(line) > 107 || !strings.HasSuffix(line, "\r\n") {
			return netip.AddrPort{}, fmt.Errorf("bad v1 line %q", line)
		}
		f := strings.Split(strings.TrimSuffix(line, "\r\n"), " ")
		if len(f) != 6 || f[0] != "PROXY" || (f[1] != "TCP4" && f[1] != "TCP6") {
			return netip.AddrPort{}, fmt.Errorf("bad v1 line %q", line)
		}
		src, err := netip.ParseAddrPort(net.JoinHostPort(f[2], f[4]))
		if err != nil || src.Addr().Is4() != (f[1] == "TCP4") {
			return netip.AddrPort{}, fmt.Errorf("bad v1 source in %q: %v", line, err)
		}
		if _, err := netip.ParseAddrPort(net.JoinHostPort(f[3], f[5])); err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad v1 destination in %q: %v", line, err)
		}
		return src, nil
	}
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return netip.AddrPort{}, err
	}
	if !bytes.Equal(h[:12], []byte("\r\n\r\n\x00\r\nQUIT\n")) || h[12] != 0x21 {
		return netip.AddrPort{}, fmt.Errorf("bad v2 header % x", h)
	}
	body := make([]byte, binary.BigEndian.Uint16(h[14:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return netip.AddrPort{}, err
	}
	switch {
	case h[13] == 0x11 && len(body) == 12:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[:4])), binary.BigEndian.Uint16(body[8:])), nil
	case h[13] == 0x21 && len(body) == 36:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[:16])), binary.BigEndian.Uint16(body[32:])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("bad v2 family %#x with %d bytes of addresses", h[13], len(body))
}

// TestExposeProxyProtocol checks that the service behind expose
// -proxy-protocol v1 and v2 reads a valid header that carries the
// client's own address, over IPv4 and IPv6 and every transport, then the
// client's bytes.
func TestExposeProxyProtocol(t *testing.T) {
	for _, transport := range []string{"json", "yamux", "tcp"} {
		for _, network := range []string{"127.0.0.1", "::1"} {
			for _, version := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/%s/v%d", transport, network, version), func(t *testing.T) {
					if l, err := net.Listen("tcp", net.JoinHostPort(network, "0")); err != nil {
						t.Skipf("no %s loopback: %v", network, err)
					} else {
						l.Close()
					}
					svc, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					defer svc.Close()
					// The DP picks its port: one picked here and closed
					// may be taken by another test before the DP binds it.
					dpAddr := mustLaunch(t, runDP, "-listen", net.JoinHostPort(network, "0")).addr
					mustLaunch(t, runExpose, "-dp", dpAddr, "-name", "web", "-to", svc.Addr().String(),
						"-proxy-protocol", fmt.Sprintf("v%d", version), "-transport", transport)

					from := make(chan netip.AddrPort, 1)
					d := rtcp.Dialer{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
						c, err := new(net.Dialer).DialContext(ctx, network, addr)
						if err == nil {
							from <- c.LocalAddr().(*net.TCPAddr).AddrPort()
						}
						return c, err
					}}
					c, err := d.DialContext(context.Background(), dpAddr, "web")
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					if _, err := io.WriteString(c, "hello"); err != nil {
						t.Fatal(err)
					}
					s, err := svc.Accept()
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					s.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
					r := bufio.NewReader(s)
					src, err := readProxyHeaderStrict(r, version)
					if err != nil {
						t.Fatal(err)
					}
					if want := <-from; src != want {
						t.Errorf("the service was told the client is %v; it is %v", src, want)
					}
					got := make([]byte, 5)
					if _, err := io.ReadFull(r, got); err != nil || string(got) != "hello" {
						t.Errorf("after the header: %q, %v; want hello", got, err)
					}
				})
			}
		}
	}
}

// TestProxyFromFlag checks -proxy-protocol-from's parsing: networks and
// bare addresses, comma-separated; anything else is an error.
func TestProxyFromFlag(t *testing.T) {
	var l prefixList
	if err := l.Set("10.1.2.3/8, 192.0.2.1,::1"); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "10.0.0.0/8,192.0.2.1/32,::1/128"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if err := l.Set("balancer.example.com"); err == nil {
		t.Error("a host name: no error")
	}
	if err := runDP(context.Background(), []string{"-listen", "127.0.0.1:0", "-proxy-protocol-from", "10.0.0.0/33"}, io.Discard, io.Discard); err == nil {
		t.Error("rtcp dp -proxy-protocol-from 10.0.0.0/33: no error")
	}
}
