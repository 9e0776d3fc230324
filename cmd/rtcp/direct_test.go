package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"rtcp"
)

// TestDirectFlags: expose -direct and connect -direct ask for a direct
// session, and the DP brokers it unless -no-direct. The client may write
// its 100 kB and half-close before its punch has ended (that direction
// then stays relayed: docs/direct.md, "Which sessions move"), so only the
// brokering is checked, and that the bytes flow either way; the move of
// sessions carried this way is TestDirectLoopbackJoin's (root package).
func TestDirectFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dpFlags  []string
		brokered uint64
	}{
		{"brokered", nil, 1},
		{"no-direct", []string{"-no-direct"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := startEcho(t)
			dp := mustLaunch(t, runDP, append([]string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}, tc.dpFlags...)...)
			mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "echo", "-to", echo, "-direct")
			conn := mustLaunch(t, runConnect, "-dp", dp.addr, "-name", "echo", "-listen", "127.0.0.1:0", "-direct")
			msg := make([]byte, 100000)
			for i := range msg {
				msg[i] = byte(i * 7)
			}
			if err := exchange(conn.addr, msg); err != nil {
				t.Fatal(err)
			}
			code, body := httpGet(t, adminURL(t, dp)+"/api/status", "")
			var st rtcp.Status
			if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
				t.Fatalf("/api/status: %d, %v:\n%s", code, err, body)
			}
			if st.DirectBrokered != tc.brokered {
				t.Errorf("/api/status: %d brokered, want %d", st.DirectBrokered, tc.brokered)
			}
		})
	}
}
