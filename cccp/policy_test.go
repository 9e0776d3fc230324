package cccp_test

import (
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"

	"rtcp"
	"rtcp/internal/flowtest"
)

// plantPolicy gives the CCCP names cccp:CLD-* to the key owner, and
// admits anonymous servers for other names.
func plantPolicy(owner string) *rtcp.Policy {
	return &rtcp.Policy{
		Keys: map[string][]byte{
			"plant": []byte("plant-secret-0123456789abcdef0123"),
			"lab":   []byte("lab-secret-0123456789abcdef012345"),
		},
		AnonymousServers: true,
		AnonymousClients: true,
		Names:            []rtcp.NameRule{{Name: "cccp:CLD-*", Owners: []string{owner}}},
	}
}

// The DP's Policy governs the devices' names (issue 14: links added with
// AddLink were always allowed, so an anonymous "CLD-1\r" took a name
// whatever the policy said). A registration whose name the Policy gives
// to another key is refused with a logged reason; with the owner's key it
// is served, until SetPolicy gives the name away: then the device is
// withdrawn at its next session.
func TestDevicePolicy(t *testing.T) {
	for _, tt := range []struct {
		name, key string
		ok        bool
	}{
		{"anonymous", "", false},
		{"another key", "lab", false},
		{"the owner's key", "plant", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnvDP(t, &rtcp.DiscoverPoint{Policy: plantPolicy("plant")}, 40000, 40009)
				e.p.Key = tt.key // before any device connects
				defer e.close()
				port := e.on("serial=CLD-1&persistent=true")
				dev := e.device("CLD-1")
				if !tt.ok {
					expectClosed(t, dev, "a device whose name the policy gives to another key")
					if !e.warned("cccp: device refused by the DP", func(r flowtest.Record) bool {
						return r.Attrs["serial"] == "CLD-1" && r.Attrs["remote"] == "198.51.100.7:50000" && r.Attrs["key"] == tt.key &&
							strings.Contains(r.Attrs["err"], `name "cccp:CLD-1" belongs to another key`)
					}) {
						t.Errorf("no refusal with its reason in the log: %v", e.logs.AtLeast(slog.LevelWarn))
					}
					if st := e.status("CLD-1"); st.DeviceConnected {
						t.Errorf("status %+v after the device was refused", st)
					}
					return
				}
				defer dev.Close()
				cl := e.client(port, "203.0.113.5:40001")
				send(t, cl, "ping")
				expect(t, dev, "ping")
				send(t, dev, "pong")
				expect(t, cl, "pong")
				cl.Close()
				synctest.Wait() // the proxy has seen its client leave

				if err := e.dp.SetPolicy(plantPolicy("lab")); err != nil {
					t.Fatal(err)
				}
				cl = e.client(port, "203.0.113.5:40002")
				defer cl.Close()
				send(t, cl, "after")
				expectNothing(t, dev) // the DP withdrew the device: no session
			})
		})
	}
}
