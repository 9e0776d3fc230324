package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp"
)

func TestParseExposeFile(t *testing.T) {
	for _, tt := range []struct {
		file string
		err  string // what the error says; empty: none
	}{
		{`{"services": [{"name": "a", "to": "127.0.0.1:22"}, {"name": "b", "to": "127.0.0.1:80", "transport": "yamux", "pool": 2, "token_file": "b.token"}]}`, ""},
		{`{"services": []}`, "no services"},
		{`{}`, "no services"},
		{`{"services": [{"to": "127.0.0.1:22"}]}`, "service 1: no name"},
		{`{"services": [{"name": "a", "to": "127.0.0.1:22"}, {"name": "a", "to": "127.0.0.1:23"}]}`, `service "a": given twice`},
		{`{"services": [{"name": "a", "to": "nowhere"}]}`, `to "nowhere": want host:port`},
		{`{"services": [{"name": "a", "to": "127.0.0.1:22", "transport": "pigeon"}]}`, `transport "pigeon"`},
		{`{"services": [{"name": "a", "to": "127.0.0.1:22", "pool": -1}]}`, "pool -1"},
		{`{"services": [{"name": "a", "to": "127.0.0.1:22", "tokenfile": "x"}]}`, `unknown field "tokenfile"`},
		{`{"services": [{"name": "a", "to": "127.0.0.1:22"}]} {}`, "more than one JSON value"},
		{`name a to 127.0.0.1:22`, "invalid character"},
	} {
		_, err := parseExposeFile([]byte(tt.file))
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v, want an error saying %q", tt.file, err, tt.err)
		}
	}
}

// TestExposeConfigFlags: -config goes without -name, -to and -fail-fast,
// and a bad file ends expose with an error that names it.
func TestExposeConfigFlags(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.json", `{"services": [{"name": "a"}]}`)
	dead := closedPort(t)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-dp", dead, "-config", bad, "-name", "x"}, 2, "rtcp expose: -config and -name exclude each other"},
		{[]string{"-dp", dead, "-config", bad, "-to", dead}, 2, "rtcp expose: -config and -to exclude each other"},
		{[]string{"-dp", dead, "-config", bad, "-fail-fast"}, 2, "rtcp expose: -config and -fail-fast exclude each other"},
		{[]string{"-config", bad}, 2, "rtcp expose: -dp is required"},
		{[]string{"-dp", dead, "-config", bad}, 1, "rtcp expose: -config " + bad + `: service "a": to "": want host:port`},
		{[]string{"-dp", dead, "-config", filepath.Join(dir, "none.json")}, 1, "rtcp expose: -config: open "},
	} {
		code, msg := runCLI(t, append([]string{"expose"}, tt.args...)...)
		if code != tt.code || !strings.HasPrefix(msg, tt.want) {
			t.Errorf("%q: exit status %d, %q; want %d and %q", tt.args, code, msg, tt.code, tt.want)
		}
	}
}

// jsonLog is a command's stderr in -log-format json, read as records.
type jsonLog struct {
	mu      sync.Mutex // guards partial and all
	partial []byte
	all     bytes.Buffer
	ch      chan map[string]any // every record, in order
}

func newJSONLog() *jsonLog { return &jsonLog{ch: make(chan map[string]any, 10000)} }

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		var m map[string]any
		if err := json.Unmarshal(l.partial[:i], &m); err != nil {
			m = map[string]any{"not json": string(l.partial[:i])}
		}
		select {
		case l.ch <- m:
		default: // nobody reads any more: the test has failed
		}
		l.partial = l.partial[i+1:]
	}
}

// wait returns the first record, from those not yet read, for which ok
// is true.
func (l *jsonLog) wait(t *testing.T, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case m := <-l.ch:
			if _, bad := m["not json"]; bad {
				t.Errorf("a line that is not JSON: %q", m["not json"])
			}
			if ok(m) {
				return m
			}
		case <-timeout:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no %s in a minute; the log:\n%s", what, l.all.String())
		}
	}
}

// withAttr returns a jsonLog.wait test for a record msg whose attribute
// key is a string that begins with prefix.
func withAttr(msg, key, prefix string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		v, ok := m[key].(string)
		return m["msg"] == msg && ok && strings.HasPrefix(v, prefix)
	}
}

// TestExposeConfig: one expose carries several names to several local
// services, each with its own settings (transport, token); a service
// whose name is taken is logged and started again until it can be
// served, while the others serve.
func TestExposeConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(tokenEnv, "")
	dpConfig := writeFile(t, dir, "dp.json", `{
		"keys": {"alice": "0123456789abcdef0123456789abcdef"},
		"anonymous_servers": true, "anonymous_clients": true,
		"names": [{"name": "pi-*", "owners": ["alice"]}]
	}`)
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-config", dpConfig).addr
	squatter, err := rtcp.Listen(dp, "busy")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()

	echo := startEchoUntilClose(t, "127.0.0.1:0")
	writeFile(t, dir, "alice.token", aliceToken) // mode 600: no warning
	config := writeFile(t, dir, "expose.json", `{"services": [
		{"name": "web", "to": "`+echo+`"},
		{"name": "pi-7", "to": "`+echo+`", "transport": "json", "pool": 2, "token_file": "alice.token"},
		{"name": "busy", "to": "`+echo+`"}
	]}`)
	log := newJSONLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runExpose(ctx, []string{"-dp", dp, "-config", config, "-max-backoff", "50ms", "-log-format", "json"}, io.Discard, log)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("expose -config: %v", err)
		}
	}()

	serving := func(name string) func(map[string]any) bool {
		return func(m map[string]any) bool {
			return m["msg"] == "rtcp expose: serving" && m["name"] == name
		}
	}
	served := map[string]map[string]any{}
	failedBusy := false
	for len(served) < 2 || !failedBusy {
		m := log.wait(t, "ready lines of web and pi-7 and an error of busy", func(m map[string]any) bool {
			return serving("web")(m) || serving("pi-7")(m) || m["level"] == "ERROR" && m["name"] == "busy"
		})
		if m["level"] == "ERROR" {
			failedBusy = true
		} else {
			served[m["name"].(string)] = m
		}
	}
	if served["pi-7"]["transport"] != "json" || served["web"]["transport"] != "tcp" {
		t.Errorf("transports: web %v, pi-7 %v; want tcp (the fastest) and json (its own)", served["web"]["transport"], served["pi-7"]["transport"])
	}
	for _, name := range []string{"web", "pi-7"} {
		echoVia(t, func() (net.Conn, error) { return rtcp.Dial(dp, name) }, []byte("to "+name))
	}

	// The name comes free: busy is served at the next attempt.
	squatter.Close()
	log.wait(t, "a ready line of busy", serving("busy"))
	echoVia(t, func() (net.Conn, error) { return rtcp.Dial(dp, "busy") }, []byte("at last"))
}
