package wsconn_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rtcp/wsconn"
)

// FuzzAcceptKey offers arbitrary Sec-WebSocket-Key values to a lenient
// Acceptor: it never panics, refuses with 400 what it does not take, and
// takes exactly the keys of RFC 6455 and the printable ones LenientKey
// promises. (An httptest.ResponseRecorder cannot be hijacked, so a key
// that is taken is answered 501 instead of 101.)
func FuzzAcceptKey(f *testing.F) {
	for _, k := range []string{cAgentKey, "AAAAAAAAAAAAAAAAAAAAAA==", "", " x ", "a b", "k\x7f", "=", "\xff"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header = http.Header{
			"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key": {key},
		}
		rec := httptest.NewRecorder()
		c, err := (&wsconn.Acceptor{LenientKey: true, MaxMessage: 100}).Accept(rec, req)
		if err == nil {
			c.Close()
			t.Fatalf("key %q: accepted on a recorder", key)
		}
		if taken := rec.Code == http.StatusNotImplemented; taken != wantTaken(key) {
			t.Fatalf("key %q: answered %d", key, rec.Code)
		}
		if rec.Code != http.StatusNotImplemented && rec.Code != http.StatusBadRequest {
			t.Fatalf("key %q: answered %d, want 400 or 501", key, rec.Code)
		}
	})
}

// wantTaken is LenientKey's rule, written out again. The key is trimmed
// as the WebSocket library trims it (strings.TrimSpace); a real request
// cannot carry control characters in a header anyway.
func wantTaken(key string) bool {
	trimmed := strings.TrimSpace(key)
	if b, err := base64.StdEncoding.DecodeString(trimmed); err == nil && len(b) == 16 {
		return true
	}
	if trimmed == "" || len(trimmed) > 64 {
		return false
	}
	for i := 0; i < len(trimmed); i++ {
		if trimmed[i] <= ' ' || trimmed[i] > '~' {
			return false
		}
	}
	return true
}
