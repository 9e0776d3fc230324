package cccp_test

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"

	"rtcp"
	"rtcp/cccp"
	wire "rtcp/protocol/cccp"
)

// FuzzControlAPI sends arbitrary paths and queries to the control API:
// every answer is a known status with a JSON body, and a 200 to /on names
// a port of the range.
func FuzzControlAPI(f *testing.F) {
	for _, s := range []string{
		"/on?serial=CLD-123456", "/on?serial=CLD-1&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.1&timeout=60",
		"/off?serial=CLD-1", "/status?serial=CLD-1", "/on?serial=a%00b", "/on?persistant=1", "/x", "/on?;",
		"/on?serial=" + string(make([]byte, 200)),
	} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, first, second string) {
		dp := new(rtcp.DiscoverPoint)
		n := newMemNet()
		p := &cccp.Proxy{DP: dp, MinPort: 40000, MaxPort: 40001, Listen: n.Listen}
		defer dp.Close()
		defer p.Close()
		for _, target := range []string{first, second} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path, req.URL.RawQuery, _ = cutQuery(target)
			req.RemoteAddr = "127.0.0.1:1"
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			if !slices.Contains([]int{200, 400, 404, 409, 503}, rec.Code) {
				t.Fatalf("%q: status %d", target, rec.Code)
			}
			if rec.Code == 200 && req.URL.Path == "/off" {
				if rec.Body.Len() != 0 {
					t.Fatalf("%q: /off answered 200 with body %q", target, rec.Body)
				}
			} else if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%q: body %q is not JSON", target, rec.Body)
			}
			if rec.Code == 200 && req.URL.Path == "/on" {
				var on wire.OnResponse
				if json.Unmarshal(rec.Body.Bytes(), &on) != nil || on.Port < 40000 || on.Port > 40001 {
					t.Fatalf("%q: /on answered %s", target, rec.Body)
				}
			}
		}
	})
}

func cutQuery(s string) (path, query string, ok bool) {
	for i := range len(s) {
		if s[i] == '?' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
