package c8y_test

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"

	"rtcp"
	"rtcp/c8y"
	wire "rtcp/protocol/c8y"
)

// FuzzKeysAPI sends arbitrary queries to the keys endpoint: every answer
// is a known status with a JSON body, and a created key's operation is one
// the agent accepts, for that key.
func FuzzKeysAPI(f *testing.F) {
	for _, s := range []string{
		"", "name=pi-7&ttl=60", "host=10.0.0.67&port=22", "host=%5B%3A%3A1%5D&port=5900&name=x",
		"host=a%20b&port=1", "port=0&host=h", "ttl=99999999999", "name=%00", "nmae=1", "a=1&a=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		dp := new(rtcp.DiscoverPoint)
		srv := &c8y.Server{DP: dp}
		defer dp.Close()
		defer srv.Close()
		req := httptest.NewRequest("POST", c8y.KeysPath, nil)
		req.URL.RawQuery = query
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if !slices.Contains([]int{201, 400}, rec.Code) || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%q: %d %q", query, rec.Code, rec.Body)
		}
		if rec.Code != 201 {
			return
		}
		var kr c8y.KeyResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &kr); err != nil {
			t.Fatal(err)
		}
		if key, ok := wire.ParseDevicePath(kr.DevicePath); !ok || key != kr.Key {
			t.Fatalf("%q: device path %q", query, kr.DevicePath)
		}
		if kr.Operation != "" {
			op, err := wire.ParseOperation([]byte(kr.Operation))
			if err != nil || op.Key != kr.Key {
				t.Fatalf("%q: operation %q: %+v, %v", query, kr.Operation, op, err)
			}
		}
	})
}
