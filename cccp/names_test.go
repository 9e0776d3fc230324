package cccp_test

import (
	"errors"
	"strconv"
	"testing"
	"testing/synctest"

	"rtcp"
	"rtcp/cccp"
	"rtcp/internal/flowtest"
)

// newEnvPrefix is newEnv with a Proxy.Prefix.
func newEnvPrefix(t *testing.T, prefix string) *env {
	logs, logger := flowtest.NewLogs()
	e := &env{t: t, n: newMemNet(), dp: new(rtcp.DiscoverPoint), logs: logs, served: make(chan error, 1)}
	e.p = &cccp.Proxy{DP: e.dp, MinPort: 40000, MaxPort: 40009, Host: "proxy.example.net", Listen: e.n.Listen,
		Prefix: prefix, Logger: logger}
	l, err := e.n.Listen("tcp", ":"+strconv.Itoa(devicePort))
	if err != nil {
		t.Fatal(err)
	}
	go func() { e.served <- e.p.ServeDevices(l) }()
	return e
}

// TestDeviceNames: with the default prefix, every serial a device may
// send makes a name (cccp:SERIAL, a door's name); with a prefix that
// makes DNS labels, a serial that makes none is refused by the DP.
func TestDeviceNames(t *testing.T) {
	for _, tt := range []struct {
		prefix, serial string
		ok             bool
	}{
		{"", "CLD-1", true},
		{"", "a b/../c é", true},
		{"cccp-", "cld-1", true},
		{"cccp-", "CLD-1", false},
		{"cccp-", "cld.1", false},
		{"cccp-", "cld-", false},
	} {
		t.Run(tt.prefix+tt.serial, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnvPrefix(t, tt.prefix)
				defer e.close()
				dev := e.device(tt.serial)
				defer dev.Close()
				st := e.dp.Stats()
				if !tt.ok {
					expectClosed(t, dev, "a device whose serial makes no name")
					if st.Refused["bad_name"] != 1 || st.Servers != 0 {
						t.Errorf("the DP refused %d names and has %d servers; want 1 and 0", st.Refused["bad_name"], st.Servers)
					}
					return
				}
				if st.Servers != 1 || rtcp.ValidDoorName(e.p.Name(tt.serial)) != nil {
					t.Errorf("the device %q (name %q) is not a server at the DP: %+v", tt.serial, e.p.Name(tt.serial), st)
				}
			})
		})
	}
}

// TestPrefixThatMakesNoName: ServeDevices refuses a Prefix that can make
// no name at once.
func TestPrefixThatMakesNoName(t *testing.T) {
	for _, prefix := range []string{"Cccp:", "cccp.", "-", "a b:"} {
		n := newMemNet()
		l, err := n.Listen("tcp", ":"+strconv.Itoa(devicePort))
		if err != nil {
			t.Fatal(err)
		}
		p := &cccp.Proxy{DP: new(rtcp.DiscoverPoint), MinPort: 40000, MaxPort: 40009, Listen: n.Listen, Prefix: prefix}
		if err := p.ServeDevices(l); !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("ServeDevices with Prefix %q = %v, want ErrBadName", prefix, err)
		}
		p.Close()
		p.DP.Close()
	}
}
