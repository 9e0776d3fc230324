package cccp

import (
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MsgNoAvailablePorts is the message of the 503 answer to /on when the proxy
// has no free port for another device, as the CCCP documentation gives it.
const MsgNoAvailablePorts = "No available ports"

// MaxTimeout is the longest timeout an /on query may ask for.
const MaxTimeout = 365 * 24 * time.Hour

// maxWhitelist bounds the entries of ip_whitelist, so that a query cannot
// make checking a client's address arbitrarily slow.
const maxWhitelist = 256

// OnResponse is the JSON body of a 200 answer to /on: where clients reach
// the device's proxy.
type OnResponse struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// StatusResponse is the JSON body of a 200 answer to /status.
type StatusResponse struct {
	DeviceConnected bool `json:"device_connected"`
	ClientConnected bool `json:"client_connected"`
	// Transferred counts the payload bytes carried through the proxy, both
	// directions together.
	Transferred int64 `json:"transferred"`
}

// ErrorResponse is the JSON body of an error answer (400, 409, 500, 503).
type ErrorResponse struct {
	Message string `json:"message"`
}

// OnRequest is a parsed /on query. Its zero value, with a Serial set, is a
// non-persistent proxy that any client address may use and that waits for
// a client forever.
type OnRequest struct {
	Serial string

	// Persistent keeps the proxy up while device and client come and go.
	Persistent bool

	// IPWhitelist lists the client addresses the proxy accepts; nil accepts
	// any. Each entry is masked (10.1.2.3/8 is 10.0.0.0/8) and an IPv4
	// address written as IPv4-mapped IPv6 is turned into IPv4.
	IPWhitelist []netip.Prefix

	// Timeout shuts the proxy down if no client connects within it. Zero
	// means no timeout. It is a whole number of seconds.
	Timeout time.Duration
}

// Allows reports whether a client at addr may connect to the proxy.
// An IPv4-mapped IPv6 addr matches IPv4 entries, and addr's zone is ignored.
func (q *OnRequest) Allows(addr netip.Addr) bool {
	if q.IPWhitelist == nil {
		return true
	}
	addr = addr.WithZone("")
	plain := addr.Unmap()
	for _, p := range q.IPWhitelist {
		if p.Contains(plain) || p.Contains(addr) {
			return true
		}
	}
	return false
}

// Equal reports whether q and o ask for the same proxy: the same serial,
// persistence and timeout, and whitelists that hold the same entries, in
// any order and each counted once (nil, any address, differs from every
// list). A server answers a repeated /on with the proxy that is on when
// the two are Equal, and with 409 when they are not.
func (q *OnRequest) Equal(o *OnRequest) bool {
	if q.Serial != o.Serial || q.Persistent != o.Persistent || q.Timeout != o.Timeout ||
		(q.IPWhitelist == nil) != (o.IPWhitelist == nil) {
		return false
	}
	return slices.Equal(prefixSet(q.IPWhitelist), prefixSet(o.IPWhitelist))
}

// prefixSet returns the prefixes of list sorted, without repeats.
func prefixSet(list []netip.Prefix) []netip.Prefix {
	set := slices.SortedFunc(slices.Values(list), netip.Prefix.Compare)
	return slices.Compact(set)
}

// Encode returns q as an /on query string, the inverse of ParseOnQuery.
// Parameters at their zero value are left out.
func (q *OnRequest) Encode() string {
	v := url.Values{"serial": {q.Serial}}
	if q.Persistent {
		v.Set("persistent", "true")
	}
	if q.IPWhitelist != nil {
		items := make([]string, len(q.IPWhitelist))
		for i, p := range q.IPWhitelist {
			if p.IsSingleIP() {
				items[i] = p.Addr().String()
			} else {
				items[i] = p.String()
			}
		}
		v.Set("ip_whitelist", strings.Join(items, ","))
	}
	if q.Timeout != 0 {
		v.Set("timeout", strconv.FormatInt(int64(q.Timeout/time.Second), 10))
	}
	return v.Encode()
}

// ParseOnQuery parses the raw query string of an /on request (the part of
// the URL after "?", as in url.URL.RawQuery):
//
//	serial=S[&persistent=true|false][&ip_whitelist=IP|CIDR,...][&timeout=SECONDS]
//
// Every error wraps ErrBadQuery, names the parameter at fault and says what
// it should look like; a serial error also wraps the serial's own sentinel.
// Unknown and repeated parameters are errors, so that a misspelt
// ip_whitelist cannot silently open a proxy to every address.
func ParseOnQuery(rawQuery string) (OnRequest, error) {
	v, err := parseQuery(rawQuery, "/on", "serial", "persistent", "ip_whitelist", "timeout")
	if err != nil {
		return OnRequest{}, err
	}
	var q OnRequest
	if q.Serial, err = serialParam(v); err != nil {
		return OnRequest{}, err
	}
	if s, ok := v["persistent"]; ok {
		switch s[0] {
		case "true":
			q.Persistent = true
		case "false":
		default:
			return OnRequest{}, queryError("persistent=%s is neither true nor false", quote(s[0]))
		}
	}
	if s, ok := v["ip_whitelist"]; ok {
		if q.IPWhitelist, err = parseWhitelist(s[0]); err != nil {
			return OnRequest{}, err
		}
	}
	if s, ok := v["timeout"]; ok {
		sec, err := strconv.ParseUint(s[0], 10, 64)
		if err != nil || sec > uint64(MaxTimeout/time.Second) {
			return OnRequest{}, queryError("timeout=%s is not a whole number of seconds from 0 (no timeout) to %d",
				quote(s[0]), MaxTimeout/time.Second)
		}
		q.Timeout = time.Duration(sec) * time.Second
	}
	return q, nil
}

// ParseSerialQuery parses the raw query string of an /off or /status
// request, serial=S, and returns the serial. Its errors are those of
// ParseOnQuery.
func ParseSerialQuery(rawQuery string) (string, error) {
	v, err := parseQuery(rawQuery, "/off and /status", "serial")
	if err != nil {
		return "", err
	}
	return serialParam(v)
}

// parseQuery splits rawQuery and checks that it names only known
// parameters, each at most once.
func parseQuery(rawQuery, endpoint string, known ...string) (url.Values, error) {
	v, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, queryError("%v; write the query as name=value pairs joined by & with percent-encoded values", err)
	}
	// Report in a fixed order, whatever the map's order.
	for _, name := range slices.Sorted(maps.Keys(v)) {
		if !slices.Contains(known, name) {
			return nil, queryError("unknown parameter %s; %s takes %s",
				quote(name), endpoint, strings.Join(known, ", "))
		}
		if n := len(v[name]); n > 1 {
			return nil, queryError("%s is given %d times; give it once", name, n)
		}
	}
	return v, nil
}

func serialParam(v url.Values) (string, error) {
	s, ok := v["serial"]
	if !ok {
		return "", queryError("serial is missing; give serial=<device serial>")
	}
	if err := checkSerial(s[0], "cccp: bad query: serial=", ErrBadQuery); err != nil {
		return "", err
	}
	return s[0], nil
}

// parseWhitelist parses a comma-separated list of IP addresses and CIDR
// prefixes; spaces around an entry are ignored.
func parseWhitelist(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, queryError("ip_whitelist is empty; leave it out to accept any client address")
	}
	items := strings.Split(s, ",")
	if len(items) > maxWhitelist {
		return nil, queryError("ip_whitelist has %d entries; give at most %d", len(items), maxWhitelist)
	}
	list := make([]netip.Prefix, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, queryError("ip_whitelist entry %d is empty; separate addresses with single commas", i+1)
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, queryError("ip_whitelist entry %s is not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32",
					quote(item))
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, queryError("ip_whitelist entry %s is neither an IP address nor a CIDR prefix like 10.0.0.0/8",
					quote(item))
			}
			if a.Zone() != "" {
				return nil, queryError("ip_whitelist entry %s has an IPv6 zone; give the address without %%zone",
					quote(item))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		list = append(list, p.Masked())
	}
	return list, nil
}

func queryError(format string, args ...any) error {
	return newError([]error{ErrBadQuery}, "cccp: bad query: "+format, args...)
}
