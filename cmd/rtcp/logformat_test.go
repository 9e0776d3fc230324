package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"rtcp"
)

// TestLogFormatFlag: every subcommand that logs takes -log-format, says
// so in -h, and refuses a format it does not know.
func TestLogFormatFlag(t *testing.T) {
	for _, c := range commands {
		if c.name == "bench" || c.name == "version" { // they print results, not logs
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), []string{c.name, "-h"}, &stdout, &stderr); code != 0 {
				t.Fatalf("rtcp %s -h: exit status %d, %s", c.name, code, stderr.String())
			}
			if !strings.Contains(stdout.String(), "-log-format format") {
				t.Errorf("rtcp %s -h does not list -log-format", c.name)
			}
			code, msg := runCLI(t, c.name, "-log-format", "yaml")
			if want := `rtcp ` + c.name + `: invalid value "yaml" for flag -log-format: want text or json`; code != 2 || !strings.HasPrefix(msg, want) {
				t.Errorf("-log-format yaml: exit status %d, %q; want 2 and %q", code, msg, want)
			}
		})
	}
}

// TestLogFormatJSON: with -log-format json, every line a command writes
// on stderr is a JSON object with the time, the level and the message:
// the ready lines and the warnings about flags too.
func TestLogFormatJSON(t *testing.T) {
	t.Setenv(tokenEnv, "")
	dir := t.TempDir()
	shared := writeFile(t, dir, "shared.token", aliceToken) // a warning: others can read it
	if err := os.Chmod(shared, 0o644); err != nil {
		t.Fatal(err)
	}
	// An open DP (a warning) with a port door and metrics (ready lines).
	dpProc := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-port", "json-logs=127.0.0.1:0", "-metrics", "127.0.0.1:0",
		"-log-format", "json")
	dp := dpProc.addr
	expose := mustLaunch(t, runExpose, "-dp", dp, "-name", "json-logs", "-to", closedPort(t), "-log-format", "json",
		"-token-file", shared)
	echo := mustLaunch(t, runExpose, "-dp", dp, "-name", "echo", "-to", startEcho(t), "-log-format", "json")
	conn := mustLaunch(t, runConnect, "-dp", dp, "-name", "echo", "-listen", "127.0.0.1:0", "-log-format", "json",
		"-tls-insecure-skip-verify", "-log-level", "debug") // a warning; the DP speaks no TLS, so no session
	var stdout, stderr bytes.Buffer
	err := connect(t.Context(), []string{"-stdio", "-dp", dp, "-name", "echo", "-log-format", "json", "-log-level", "debug"},
		strings.NewReader("hi"), &stdout, &stderr)
	if err != nil {
		t.Fatalf("connect -stdio: %v", err)
	}
	// expose logs, then refuses, a session its -to refuses.
	err = connect(t.Context(), []string{"-stdio", "-dp", dp, "-name", "json-logs"}, strings.NewReader(""), io.Discard, io.Discard)
	if !errors.Is(err, rtcp.ErrRefused) {
		t.Fatalf("connect -stdio to a server whose -to refuses: %v, want a refusal", err)
	}
	for name, tt := range map[string]struct {
		out   string
		ready string // the message of the line that says it is ready
		warns int
	}{
		"dp":             {dpProc.out.String(), "rtcp dp: listening", 1},
		"expose":         {expose.out.String(), "rtcp expose: serving", 2}, // the shared file; the refused session
		"expose echo":    {echo.out.String(), "rtcp expose: serving", 0},
		"connect":        {conn.out.String(), "rtcp connect: listening", 1},
		"connect -stdio": {stderr.String(), "", 0},
	} {
		n, ready, warns := 0, 0, 0
		for _, line := range strings.Split(strings.TrimSuffix(tt.out, "\n"), "\n") {
			if line == "" && tt.out == "" {
				break // connect -stdio on the raw leg logs nothing
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("%s wrote a line that is not JSON: %q", name, line)
				continue
			}
			for _, key := range []string{"time", "level", "msg"} {
				if _, ok := m[key]; !ok {
					t.Errorf("%s logged %q without %q", name, line, key)
				}
			}
			if m["msg"] == tt.ready && m["level"] == "INFO" && m["addr"] != nil {
				ready++
			}
			if m["level"] == "WARN" {
				warns++
			}
			n++
		}
		if n == 0 && tt.ready != "" {
			t.Errorf("%s logged nothing", name)
		}
		if tt.ready != "" && ready != 1 {
			t.Errorf("%s logged %d ready lines (INFO %q with an addr), want 1; its stderr:\n%s", name, ready, tt.ready, tt.out)
		}
		if warns != tt.warns {
			t.Errorf("%s logged %d warnings, want %d; its stderr:\n%s", name, warns, tt.warns, tt.out)
		}
	}
}

// TestReadyWhateverTheLevel: -log-level error silences INFO, but not the
// line that says the command is ready.
func TestReadyWhateverTheLevel(t *testing.T) {
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0", "-log-level", "error", "-log-format", "json")
	var m map[string]any
	line, _, _ := strings.Cut(dp.out.String(), "\n")
	if err := json.Unmarshal([]byte(line), &m); err != nil || m["level"] != "INFO" || m["msg"] != "rtcp dp: listening" {
		t.Errorf("rtcp dp -log-level error: first line %q (%v), want its ready line at INFO", line, err)
	}
}

// TestLogFormatJSONFailure: with -log-format json, the line that says why
// a command failed is JSON too (level ERROR, with err); a usage error
// stays plain text, since the flags may not have been understood.
func TestLogFormatJSONFailure(t *testing.T) {
	dead := closedPort(t)
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"expose", "-dp", dead, "-name", "x", "-to", dead, "-fail-fast", "-log-format=json"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	var last map[string]any
	for _, line := range lines {
		last = nil
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			t.Errorf("a line that is not JSON: %q", line)
		}
	}
	if last["level"] != "ERROR" || last["msg"] != "rtcp expose: failed" || last["err"] == nil {
		t.Errorf("last line %v, want the failure at ERROR with its err", last)
	}
	for _, args := range [][]string{
		{"-log-format", "json"}, {"--log-format=json"}, {"-log-format", "text", "-log-format", "json"},
	} {
		if !jsonLogs(args) {
			t.Errorf("jsonLogs(%q) = false", args)
		}
	}
	for _, args := range [][]string{
		nil, {"-log-format", "text"}, {"-log-format", "json", "-log-format", "text"}, {"-name", "log-format", "json"}, {"--", "-log-format", "json"},
	} {
		if jsonLogs(args) {
			t.Errorf("jsonLogs(%q) = true", args)
		}
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"expose", "-log-format", "json"}, &stdout, &stderr); code != 2 || json.Valid(stderr.Bytes()) {
		t.Errorf("a usage error with -log-format json: exit status %d, %q; want 2 and plain text", code, stderr.String())
	}
}
