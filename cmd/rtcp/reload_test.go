package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"rtcp"
	"rtcp/internal/flowtest"
)

// reloadSecrets are the keys of the reload tests.
var reloadSecrets = map[string]string{
	"alice":   "alice-0123456789abcdef",
	"bob":     "bob-0123456789abcdef01",
	"carol":   "carol-0123456789abcdef",
	"mallory": "mallory-0123456789abcd",
}

func reloadCred(key string) *rtcp.Credential {
	return &rtcp.Credential{Key: key, Secret: []byte(reloadSecrets[key])}
}

// writeConfig writes a -config file that knows keys and gives printer
// to alice.
func writeConfig(t *testing.T, path string, keys ...string) {
	t.Helper()
	c := config{Keys: map[string]string{}, Names: []nameConfig{{Name: "printer", Owners: []string{"alice"}}}}
	for _, k := range keys {
		c.Keys[k] = reloadSecrets[k]
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// reloadServer registers name at dp with key's credential, echoes its
// sessions until the test ends, and returns its events.
func reloadServer(t *testing.T, dp, name, key string) <-chan rtcp.Event {
	t.Helper()
	events := make(chan rtcp.Event, 100)
	lc := rtcp.ListenConfig{Credential: reloadCred(key), MinBackoff: time.Hour, MaxBackoff: time.Hour,
		OnEvent: func(e rtcp.Event) {
			select {
			case events <- e:
			default:
			}
		}}
	l, err := lc.Listen(t.Context(), dp, name)
	if err != nil {
		t.Fatalf("%s's server: %v", key, err)
	}
	flowtest.Echo(t, l)
	return events
}

// waitLinkDown waits for a link down among events.
func waitLinkDown(t *testing.T, who string, events <-chan rtcp.Event) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case e := <-events:
			if e.Kind == rtcp.EventLinkDown {
				return
			}
		case <-timeout:
			t.Fatalf("%s's link is still up a minute after the reload", who)
		}
	}
}

// reloadPing checks that c echoes msg.
func reloadPing(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("%s: write: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("%s: echo %q, %v", msg, buf, err)
	}
}

func dialAs(dp, key string) (net.Conn, error) {
	return (&rtcp.Dialer{Credential: reloadCred(key)}).DialContext(context.Background(), dp, "printer")
}

// TestPolicyReload applies changed files to a running DP: what the new
// policy still allows goes on, what it does not ends, and a file that is
// bad in any way changes nothing and says which file and what is wrong.
func TestPolicyReload(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/dp.json"
	writeConfig(t, cfg, "alice", "bob", "mallory")
	tok := writeFile(t, dir, "dp.token", "dp:dp-0123456789abcdef0")
	sec := &security{dp: true, configFile: cfg, tokenFile: tok, getenv: func(string) string { return "" }}
	pol, err := sec.policy(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dpv := &rtcp.DiscoverPoint{Policy: pol}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dpv.Serve(ln) }()
	defer func() {
		dpv.Close()
		<-served
	}()
	dp := ln.Addr().String()
	r := &policyReloader{sec: sec, keys: [][2]string{{"mihini-key", "bob"}}, dp: dpv, log: slog.New(slog.DiscardHandler), cur: pol}

	reloadServer(t, dp, "printer", "alice")
	mallorys := reloadServer(t, dp, "mallory-box", "mallory")
	bobs, err := dialAs(dp, "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer bobs.Close()
	reloadPing(t, bobs, "before")

	writeConfig(t, cfg, "alice", "bob", "carol")
	changes, err := r.reload()
	if err != nil {
		t.Fatal(err)
	}
	if want := "keys added: carol; keys removed: mallory"; changes != want {
		t.Errorf("reload says %q, want %q", changes, want)
	}
	waitLinkDown(t, "mallory", mallorys)
	reloadPing(t, bobs, "after the reload")
	if _, err := dialAs(dp, "mallory"); !errors.Is(err, rtcp.ErrUnauthorized) {
		t.Errorf("mallory's dial after the reload: %v, want ErrUnauthorized", err)
	}
	carols, err := dialAs(dp, "carol")
	if err != nil {
		t.Fatalf("carol, added: %v", err)
	}
	reloadPing(t, carols, "carol")
	carols.Close()

	for _, tt := range []struct {
		name    string
		prepare func()
		says    []string // what the error says, the file first
	}{
		{"not JSON", func() { os.WriteFile(cfg, []byte("{"), 0o600) }, []string{"-config " + cfg, "unexpected EOF"}},
		{"misspelt field", func() { os.WriteFile(cfg, []byte(`{"keyz": {}}`), 0o600) }, []string{"-config " + cfg, `unknown field "keyz"`}},
		{"short secret", func() { os.WriteFile(cfg, []byte(`{"keys": {"alice": "short"}}`), 0o600) }, []string{"-config " + cfg, `the secret of key "alice" is 5 bytes`}},
		{"no config", func() { os.Remove(cfg) }, []string{"-config", cfg, "no such file"}},
		{"no token", func() { writeConfig(t, cfg, "alice", "bob", "carol"); os.Remove(tok) }, []string{"-token-file", tok, "no such file"}},
		{"bad token", func() { writeFile(t, dir, "dp.token", "dp-without-secret") }, []string{"-token-file " + tok, "KEY:SECRET"}},
		{"a flag's key gone", func() {
			writeFile(t, dir, "dp.token", "dp:dp-0123456789abcdef0")
			writeConfig(t, cfg, "alice", "carol")
		}, []string{"-mihini-key", `"bob"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.prepare()
			changes, err := r.reload()
			if err == nil {
				t.Fatalf("reload took it: %s", changes)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if c, err := dialAs(dp, "carol"); err != nil {
				t.Errorf("carol, under the old policy: %v", err)
			} else {
				c.Close()
			}
			reloadPing(t, bobs, "after "+tt.name)
		})
	}

	writeConfig(t, cfg, "alice", "bob", "carol")
	writeFile(t, dir, "dp.token", "dp:dp-another-secret-0123")
	if changes, err := r.reload(); err != nil || changes != "secrets changed: dp" {
		t.Errorf("reload of a new token: %q, %v; want the secret of dp changed", changes, err)
	}
	if changes, err := r.reload(); err != nil || changes != "no change" {
		t.Errorf("reload of the same files: %q, %v; want no change", changes, err)
	}
	reloadPing(t, bobs, "at the end")
}

// TestBinaryDPReload runs the built command: SIGHUP makes rtcp dp read
// -config again and apply it, ending only what it no longer allows, and
// a bad file leaves it serving under the old policy, with an error
// logged; SIGTERM still stops it with status 0.
func TestBinaryDPReload(t *testing.T) {
	needSlow(t)
	bin := buildCommand(t)
	cfg := t.TempDir() + "/dp.json"
	writeConfig(t, cfg, "alice", "bob", "mallory")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang fails, not blocks
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dp", "-listen", "127.0.0.1:0", "-config", cfg, "-log-format", "json")
	out := newLines()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("rtcp dp after SIGTERM: %v", err)
		}
	}()
	dp := out.wait(t, regexp.MustCompile(`"msg":"rtcp dp: listening","addr":"([^"]+)"`))

	reloadServer(t, dp, "printer", "alice")
	mallorys := reloadServer(t, dp, "mallory-box", "mallory")
	bobs, err := dialAs(dp, "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer bobs.Close()
	reloadPing(t, bobs, "before")

	writeConfig(t, cfg, "alice", "bob")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLinkDown(t, "mallory", mallorys)
	reloadPing(t, bobs, "after SIGHUP")
	if _, err := dialAs(dp, "mallory"); !errors.Is(err, rtcp.ErrUnauthorized) {
		t.Errorf("mallory's dial after the reload: %v, want ErrUnauthorized", err)
	}

	os.WriteFile(cfg, []byte("{"), 0o600)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec := waitRecord(t, out, "ERROR")
	if err, _ := rec["err"].(string); !strings.Contains(err, cfg) {
		t.Errorf("the failed reload's error %q does not name %s", err, cfg)
	}
	reloadPing(t, bobs, "after a bad file")
	c, err := dialAs(dp, "bob")
	if err != nil {
		t.Fatalf("a new session under the old policy: %v", err)
	}
	reloadPing(t, c, "new")
	c.Close()
	select {
	case err := <-exited:
		t.Fatalf("rtcp dp exited: %v", err)
	default:
	}
}

// waitRecord returns the next JSON log record of level from out.
func waitRecord(t *testing.T, out *lines, level string) map[string]any {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l := <-out.ch:
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["level"] == level {
				return rec
			}
		case <-timeout:
			t.Fatalf("no %s record in a minute", level)
		}
	}
}
