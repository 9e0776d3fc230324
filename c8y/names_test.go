package c8y_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"rtcp"
	"rtcp/c8y"
)

// TestKeyNames: a key's name is checked as every name at the DP is; a bad
// one is refused, by NewKey with ErrBadName and by the keys endpoint with
// 400, and nothing is registered.
func TestKeyNames(t *testing.T) {
	dp := new(rtcp.DiscoverPoint)
	srv := &c8y.Server{DP: dp}
	defer dp.Close()
	defer srv.Close()
	for _, name := range []string{"a@b", "Pi-7", "pi 7", "pi.7", "x\ny", "-pi"} {
		if _, err := srv.NewKey(name, 0); !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("NewKey(%q) = %v, want ErrBadName", name, err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", c8y.KeysPath+"?name="+url.QueryEscape(name), nil)
		req.RemoteAddr = "127.0.0.1:1"
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("POST name=%q: %d %s, want 400", name, rec.Code, rec.Body)
		}
	}
	if st := dp.Stats(); st.Servers != 0 || srv.Stats().Keys != 0 {
		t.Errorf("bad names left %d servers at the DP and %d keys", st.Servers, srv.Stats().Keys)
	}
	for _, name := range []string{"pi-7", "", "c8y:Pi 7"} {
		k, err := srv.NewKey(name, 0)
		if err != nil {
			t.Errorf("NewKey(%q) = %v", name, err)
			continue
		}
		if rtcp.ValidDoorName(k.Name) != nil {
			t.Errorf("NewKey(%q) registered %q", name, k.Name)
		}
	}
}
