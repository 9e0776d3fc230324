package cccp

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func prefixes(s ...string) []netip.Prefix {
	var list []netip.Prefix
	for _, p := range s {
		list = append(list, netip.MustParsePrefix(p))
	}
	return list
}

func TestParseOnQuery(t *testing.T) {
	tests := []struct {
		query string
		want  OnRequest
	}{
		{"serial=CLD-123456", OnRequest{Serial: "CLD-123456"}},
		{"serial=CLD-123456&persistent=true", OnRequest{Serial: "CLD-123456", Persistent: true}},
		{"serial=CLD-123456&persistent=false", OnRequest{Serial: "CLD-123456"}},
		{"serial=CLD-123456&timeout=30", OnRequest{Serial: "CLD-123456", Timeout: 30 * time.Second}},
		{"serial=CLD-123456&timeout=0", OnRequest{Serial: "CLD-123456"}},
		{"timeout=31536000&serial=x", OnRequest{Serial: "x", Timeout: MaxTimeout}},
		{"serial=CLD-123456&ip_whitelist=10.0.0.1,10.0.0.2", OnRequest{
			Serial: "CLD-123456", IPWhitelist: prefixes("10.0.0.1/32", "10.0.0.2/32")}},
		{"serial=CLD-123456&persistent=true&ip_whitelist=192.168.0.0/16,2001:db8::1&timeout=60", OnRequest{
			Serial: "CLD-123456", Persistent: true, Timeout: time.Minute,
			IPWhitelist: prefixes("192.168.0.0/16", "2001:db8::1/128")}},
		{"serial=a&ip_whitelist=10.0.0.1%2C%2010.0.0.2", OnRequest{Serial: "a", IPWhitelist: prefixes("10.0.0.1/32", "10.0.0.2/32")}},
		{"serial=a&ip_whitelist=10.1.2.3/8", OnRequest{Serial: "a", IPWhitelist: prefixes("10.0.0.0/8")}},
		{"serial=a&ip_whitelist=::ffff:10.0.0.1,::ffff:10.0.0.0/104", OnRequest{Serial: "a", IPWhitelist: prefixes("10.0.0.1/32", "10.0.0.0/8")}},
		{"serial=a&ip_whitelist=0.0.0.0/0,::/0", OnRequest{Serial: "a", IPWhitelist: prefixes("0.0.0.0/0", "::/0")}},
		{"serial=G%C3%A4r%C3%A4t+7", OnRequest{Serial: "Gärät 7"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := ParseOnQuery(tt.query)
			if err != nil {
				t.Fatalf("ParseOnQuery(%q) = %v", tt.query, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ParseOnQuery(%q) mismatch (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParseOnQueryBad(t *testing.T) {
	tests := []struct {
		query string
		in    string // in the message
	}{
		{"", "serial is missing"},
		{"persistent=true", "serial is missing"},
		{"serial=", `serial="" is empty`},
		{"serial=a%00b", "U+0000"},
		{"serial=a%0Db", "U+000D"},
		{"serial=%FF", "UTF-8"},
		{"serial=" + strings.Repeat("x", MaxSerialLen+1), "129 bytes"},
		{"serial=a&serial=b", "serial is given 2 times"},
		{"serial=a&persistant=true", `unknown parameter "persistant"`},
		{"serial=a&Serial=b", `unknown parameter "Serial"`},
		{"serial=a&persistent=yes", `persistent="yes" is neither true nor false`},
		{"serial=a&persistent=", `persistent="" is neither`},
		{"serial=a&persistent", `persistent="" is neither`},
		{"serial=a&persistent=TRUE", "neither true nor false"},
		{"serial=a&timeout=abc", `timeout="abc" is not a whole number`},
		{"serial=a&timeout=1.5", "whole number"},
		{"serial=a&timeout=-1", "whole number"},
		{"serial=a&timeout=+5", "whole number"},
		{"serial=a&timeout=", "whole number"},
		{"serial=a&timeout=31536001", "31536000"},
		{"serial=a&timeout=99999999999999999999999", "whole number"},
		{"serial=a&ip_whitelist=", "ip_whitelist is empty"},
		{"serial=a&ip_whitelist=10.0.0.1,,10.0.0.2", "entry 2 is empty"},
		{"serial=a&ip_whitelist=10.0.0.1,", "entry 2 is empty"},
		{"serial=a&ip_whitelist=10.0.0.300", `"10.0.0.300" is neither an IP address`},
		{"serial=a&ip_whitelist=example.com", "neither an IP address"},
		{"serial=a&ip_whitelist=10.0.0.0/33", "not a CIDR prefix"},
		{"serial=a&ip_whitelist=10.0.0.0/", "not a CIDR prefix"},
		{"serial=a&ip_whitelist=fe80::1%25eth0", "zone"},
		{"serial=a&ip_whitelist=fe80::%25eth0/64", "not a CIDR prefix"},
		{"serial=a&ip_whitelist=" + strings.Repeat("10.0.0.1,", maxWhitelist) + "10.0.0.1", "at most 256"},
		{"serial=a%zz", "invalid URL escape"},
		{"serial=a;timeout=5", "semicolon"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := ParseOnQuery(tt.query)
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("ParseOnQuery(%.60q) = %+v, %v; want an error wrapping ErrBadQuery", tt.query, got, err)
			}
			if !strings.Contains(err.Error(), tt.in) || !strings.HasPrefix(err.Error(), "cccp: bad query: ") {
				t.Errorf("error %q does not start \"cccp: bad query: \" and contain %q", err, tt.in)
			}
		})
	}
}

func TestParseOnQuerySerialErrors(t *testing.T) {
	for query, want := range map[string]error{
		"serial=":                            ErrEmptySerial,
		"serial=%01":                         ErrBadSerial,
		"serial=" + strings.Repeat("x", 200): ErrSerialTooLong,
	} {
		_, err := ParseOnQuery(query)
		if !errors.Is(err, ErrBadQuery) || !errors.Is(err, want) {
			t.Errorf("ParseOnQuery(%.30q) = %v; want it to wrap ErrBadQuery and %v", query, err, want)
		}
	}
}

func TestParseSerialQuery(t *testing.T) {
	if s, err := ParseSerialQuery("serial=CLD-123456"); err != nil || s != "CLD-123456" {
		t.Errorf("ParseSerialQuery = %q, %v; want \"CLD-123456\", nil", s, err)
	}
	for _, q := range []string{"", "serial=", "serial=a&timeout=5", "serial=a&serial=a", "%"} {
		if s, err := ParseSerialQuery(q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("ParseSerialQuery(%q) = %q, %v; want an error wrapping ErrBadQuery", q, s, err)
		}
	}
}

func TestAllows(t *testing.T) {
	q, err := ParseOnQuery("serial=a&ip_whitelist=10.0.0.0/8,192.168.1.7,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3":         true,
		"::ffff:10.1.2.3":  true,
		"192.168.1.7":      true,
		"192.168.1.8":      false,
		"11.0.0.1":         false,
		"2001:db8::5":      true,
		"2001:db8::5%eth0": true,
		"2001:db9::5":      false,
		"::1":              false,
	} {
		if got := q.Allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", addr, got, want)
		}
	}
	if q.Allows(netip.Addr{}) {
		t.Error("Allows(zero Addr) = true, want false")
	}
	open := OnRequest{Serial: "a"}
	if !open.Allows(netip.MustParseAddr("203.0.113.9")) {
		t.Error("without a whitelist, Allows = false, want true")
	}
}

func TestOnRequestEncode(t *testing.T) {
	q := OnRequest{Serial: "CLD 1&2", Persistent: true, Timeout: 30 * time.Second,
		IPWhitelist: prefixes("10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32")}
	const want = "ip_whitelist=10.0.0.0%2F8%2C192.168.1.7%2C2001%3Adb8%3A%3A%2F32&persistent=true&serial=CLD+1%262&timeout=30"
	if got := q.Encode(); got != want {
		t.Errorf("Encode() = %q, want %q", got, want)
	}
	if got := (&OnRequest{Serial: "x"}).Encode(); got != "serial=x" {
		t.Errorf("Encode() = %q, want \"serial=x\"", got)
	}
}

// The JSON bodies must be the documented ones, as valid JSON (the CCCP
// documentation shows keys without quotes).
func TestJSONBodies(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{OnResponse{Host: "proxy.cloud.tcxn.net", Port: 40001}, `{"host":"proxy.cloud.tcxn.net","port":40001}`},
		{ErrorResponse{Message: MsgNoAvailablePorts}, `{"message":"No available ports"}`},
		{StatusResponse{DeviceConnected: true, Transferred: 1234}, `{"device_connected":true,"client_connected":false,"transferred":1234}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%#v) = %s, %v; want %s", tt.v, b, err, tt.want)
		}
	}
	var st StatusResponse
	if err := json.Unmarshal([]byte(`{"device_connected":false,"client_connected":true,"transferred":9007199254740993}`), &st); err != nil ||
		st != (StatusResponse{ClientConnected: true, Transferred: 9007199254740993}) {
		t.Errorf("json.Unmarshal = %+v, %v", st, err)
	}
}

func TestOnRequestEqual(t *testing.T) {
	base := "serial=a&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60"
	for _, tt := range []struct {
		query string
		equal bool
	}{
		{base, true},
		{"timeout=60&serial=a&ip_whitelist=192.0.2.1,10.1.2.3/8,::ffff:192.0.2.1&persistent=true", true},
		{"serial=b&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60", false},
		{"serial=a&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60", false},
		{"serial=a&persistent=true&ip_whitelist=10.0.0.0/8&timeout=60", false},
		{"serial=a&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1,192.0.2.2&timeout=60", false},
		{"serial=a&persistent=true&timeout=60", false},
		{"serial=a&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1", false},
	} {
		q, err := ParseOnQuery(base)
		o, err2 := ParseOnQuery(tt.query)
		if err != nil || err2 != nil {
			t.Fatal(err, err2)
		}
		if q.Equal(&o) != tt.equal || o.Equal(&q) != tt.equal {
			t.Errorf("Equal(%q, %q) = %v, want %v", base, tt.query, !tt.equal, tt.equal)
		}
	}
	var none, empty OnRequest
	empty.IPWhitelist = []netip.Prefix{}
	if none.Equal(&empty) {
		t.Error("a nil whitelist (any address) equals an empty one")
	}
}

func FuzzParseOnQuery(f *testing.F) {
	for _, s := range []string{
		"serial=CLD-123456",
		"serial=CLD-123456&persistent=true&ip_whitelist=10.0.0.1,192.168.0.0/16&timeout=30",
		"serial=a&ip_whitelist=::ffff:10.0.0.0/104,2001:db8::1",
		"serial=a&persistent=false&timeout=0",
		"serial=a%zz", "serial=a&serial=b", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q, err := ParseOnQuery(query)
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("ParseOnQuery(%q) = %v, which does not wrap ErrBadQuery", query, err)
			}
			return
		}
		if err := CheckSerial(q.Serial); err != nil {
			t.Fatalf("ParseOnQuery(%q) accepted serial %q: %v", query, q.Serial, err)
		}
		if q.Timeout < 0 || q.Timeout > MaxTimeout || q.Timeout%time.Second != 0 {
			t.Fatalf("ParseOnQuery(%q) gave timeout %v", query, q.Timeout)
		}
		if q.IPWhitelist != nil && (len(q.IPWhitelist) == 0 || len(q.IPWhitelist) > maxWhitelist) {
			t.Fatalf("ParseOnQuery(%q) gave %d whitelist entries", query, len(q.IPWhitelist))
		}
		for _, p := range q.IPWhitelist {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() && p.Bits() >= 96 || p.Addr().Zone() != "" {
				t.Fatalf("ParseOnQuery(%q) gave whitelist entry %v", query, p)
			}
			if !q.Allows(p.Addr()) {
				t.Fatalf("whitelist %v does not allow its own entry %v", q.IPWhitelist, p.Addr())
			}
		}
		again, err := ParseOnQuery(q.Encode())
		if err != nil {
			t.Fatalf("ParseOnQuery(%q).Encode() = %q, which does not parse: %v", query, q.Encode(), err)
		}
		if diff := cmp.Diff(q, again, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("%q does not survive Encode (-first +again):\n%s", query, diff)
		}
		if !q.Equal(&again) {
			t.Fatalf("%q is not Equal to itself after Encode", query)
		}
	})
}
