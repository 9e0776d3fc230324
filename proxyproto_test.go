package rtcp

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func tcpAddr(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// TestProxyHeader checks the headers AppendProxyHeader writes, byte for
// byte against the spec's layout, and that readProxyHeader reads back
// exactly them and the address they carry.
func TestProxyHeader(t *testing.T) {
	v2 := func(fam byte, addrs ...byte) string {
		b := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21"), fam, 0, byte(len(addrs)))
		return string(append(b, addrs...))
	}
	tests := []struct {
		version  int
		src, dst net.Addr
		want     string
		client   string // what readProxyHeader returns; "" for nil
	}{
		{1, tcpAddr("192.0.2.1:5555"), tcpAddr("127.0.0.1:9000"), "PROXY TCP4 192.0.2.1 127.0.0.1 5555 9000\r\n", "192.0.2.1:5555"},
		{1, &Addr{Name: "c", Addr: "[2001:db8::1]:443"}, &Addr{Name: "s", Addr: "[::1]:9000"}, "PROXY TCP6 2001:db8::1 ::1 443 9000\r\n", "[2001:db8::1]:443"},
		{1, &Addr{Name: "c", Addr: "[::ffff:192.0.2.1]:1"}, &Addr{Name: "s", Addr: "dp.example.com:9000"}, "PROXY TCP4 192.0.2.1 0.0.0.0 1 0\r\n", "192.0.2.1:1"},
		{1, &Addr{Name: "c", Addr: "192.0.2.1:1"}, tcpAddr("[::1]:9000"), "PROXY TCP4 192.0.2.1 0.0.0.0 1 9000\r\n", "192.0.2.1:1"},
		{1, &Addr{Name: "c", Addr: "[2001:db8::1]:1"}, tcpAddr("127.0.0.1:9000"), "PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1 9000\r\n", "[2001:db8::1]:1"},
		{1, carriedAddr("somewhere"), nil, "PROXY UNKNOWN\r\n", ""},
		{2, tcpAddr("192.0.2.1:5555"), tcpAddr("127.0.0.1:9000"),
			v2(0x11, 192, 0, 2, 1, 127, 0, 0, 1, 0x15, 0xb3, 0x23, 0x28), "192.0.2.1:5555"},
		{2, tcpAddr("[2001:db8::1]:443"), tcpAddr("[::1]:9000"),
			v2(0x21, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb, 0x23, 0x28), "[2001:db8::1]:443"},
		{2, carriedAddr("somewhere"), nil, v2(0x00), ""},
	}
	for _, tt := range tests {
		b, err := AppendProxyHeader(nil, tt.version, tt.src, tt.dst)
		if err != nil {
			t.Fatalf("v%d %v: %v", tt.version, tt.src, err)
		}
		if string(b) != tt.want {
			t.Errorf("v%d %v -> %v: %q, want %q", tt.version, tt.src, tt.dst, b, tt.want)
		}
		r := strings.NewReader(string(b) + "rest")
		got, err := readProxyHeader(r)
		if err != nil {
			t.Errorf("reading %q back: %v", b, err)
			continue
		}
		if s := addrString(got); s != tt.client {
			t.Errorf("reading %q back: client %q, want %q", b, s, tt.client)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Errorf("reading %q back left %q, want rest", b, rest)
		}
	}
	if _, err := AppendProxyHeader(nil, 3, nil, nil); err == nil {
		t.Error("version 3: no error")
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// TestReadProxyHeaderBad checks that what is not a valid header is an
// error, and that a v1 header never makes the reader wait for more than
// it needs.
func TestReadProxyHeaderBad(t *testing.T) {
	for _, in := range []string{
		"",
		"GET / HTTP/1.1\r\n\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + strings.Repeat(" ", 100) + "\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + strings.Repeat("x", 12),
		"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + strings.Repeat("x", 12),
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04xxxx",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + strings.Repeat("x", 12),
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0cshort",
	} {
		if a, err := readProxyHeader(strings.NewReader(in)); err == nil {
			t.Errorf("%q: read %v, want an error", in, a)
		}
	}
	// v2 LOCAL (a balancer's health check): no client address.
	local := "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
	if a, err := readProxyHeader(strings.NewReader(local)); a != nil || err != nil {
		t.Errorf("LOCAL: %v, %v; want nil, nil", a, err)
	}
}

// FuzzReadProxyHeader checks that readProxyHeader never panics, reads no
// more than the header, and that what it accepts it reads again the same.
func FuzzReadProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 192.0.2.1 127.0.0.1 5555 9000\r\nGET /",
		"PROXY TCP6 2001:db8::1 ::1 443 9000\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
	} {
		f.Add([]byte(s))
	}
	for _, src := range []string{"192.0.2.1:5555", "[2001:db8::1]:443"} {
		b, _ := AppendProxyHeader(nil, 2, tcpAddr(src), tcpAddr("127.0.0.1:9000"))
		f.Add(append(b, "tail"...))
		f.Add(append(append(b[:len(b):len(b)], 0x01, 0x00, 0x02, 'h', '2'), "tail"...)) // a TLV beyond the length
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		a, err := readProxyHeader(r)
		if err != nil {
			return
		}
		n := len(in) - r.Len()
		if n > 16+65535 {
			t.Fatalf("read %d bytes", n)
		}
		again, err := readProxyHeader(bytes.NewReader(in[:n]))
		if err != nil || addrString(again) != addrString(a) {
			t.Fatalf("the header alone reads %v, %v; with what follows %v", again, err, a)
		}
	})
}
