package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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

// TestLogFormatJSON: with -log-format json, log lines are JSON objects
// with the time, the level and the message.
func TestLogFormatJSON(t *testing.T) {
	dp := stdioServers(t)
	expose := mustLaunch(t, runExpose, "-dp", dp, "-name", "json-logs", "-to", closedPort(t), "-log-format", "json")
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
	for name, out := range map[string]string{"expose": expose.out.String(), "connect": stderr.String()} {
		n := 0
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if strings.HasPrefix(line, "rtcp "+name+": ") {
				continue // the line that says it is ready, for people and scripts
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("%s logged a line that is not JSON: %q", name, line)
				continue
			}
			for _, key := range []string{"time", "level", "msg"} {
				if _, ok := m[key]; !ok {
					t.Errorf("%s logged %q without %q", name, line, key)
				}
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s logged nothing; its stderr:\n%s", name, out)
		}
	}
}
