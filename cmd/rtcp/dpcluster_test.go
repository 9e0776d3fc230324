package main

import (
	"bytes"
	"strings"
	"testing"

	"rtcp/internal/etcdtest"
)

func TestDPClusterFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"etcd without advertise", []string{"-etcd", "http://127.0.0.1:2379"}, "rtcp dp: -etcd needs -advertise"},
		{"advertise without etcd", []string{"-advertise", "127.0.0.1:9000"}, "rtcp dp: -advertise is for a DP of a cluster"},
		{"advertise without host", []string{"-etcd", "http://127.0.0.1:2379", "-advertise", ":9000"}, `rtcp dp: -advertise ":9000": want host:port`},
		{"short ttl", []string{"-etcd", "http://127.0.0.1:2379", "-advertise", "127.0.0.1:9000", "-etcd-ttl", "10ms"}, "rtcp dp: -etcd-ttl 10ms: want at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"dp", "-listen", "127.0.0.1:0"}, tt.args...)
			if code := run(t.Context(), args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.HasPrefix(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to start with %q", stderr.String(), tt.want)
			}
		})
	}
}

// Two DPs on one etcd: a server exposed on both, a client of DP2, and a
// server exposed on DP1 only, reached through DP2.
func TestDPCluster(t *testing.T) {
	etcd := etcdtest.Start(t)
	a1, a2 := closedPort(t), closedPort(t)
	for _, a := range []string{a1, a2} {
		mustLaunch(t, runDP, "-listen", a, "-etcd", etcd.Endpoint, "-advertise", a, "-etcd-ttl", "2s")
	}
	echo := startEcho(t)
	mustLaunch(t, runExpose, "-dp", a1+","+a2, "-name", "both", "-to", echo, "-transport", "yamux")
	mustLaunch(t, runExpose, "-dp", a1, "-name", "one", "-to", echo)
	for _, name := range []string{"both", "one"} {
		conn := mustLaunch(t, runConnect, "-dp", a2, "-name", name, "-listen", "127.0.0.1:0", "-transport", "yamux")
		if err := exchange(conn.addr, bytes.Repeat([]byte("cluster "), 1000)); err != nil {
			t.Errorf("%s through DP2: %v", name, err)
		}
	}
}
