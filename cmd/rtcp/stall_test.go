package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestStallTimeoutFlag: every command that runs a link of peers without
// flow control takes -stall-timeout, says what it does, and refuses a
// value that is not a duration.
func TestStallTimeoutFlag(t *testing.T) {
	for _, cmd := range [][]string{
		{"dp", "-listen", "127.0.0.1:0"},
		{"mihini-server", "-listen", "127.0.0.1:0", "-map", "127.0.0.1:0=127.0.0.1:22"},
		{"mihini-device", "-server", "127.0.0.1:1"},
		{"tcpipe", "-s", "127.0.0.1:0", "-p", "40000"},
	} {
		t.Run(cmd[0], func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), []string{cmd[0], "-h"}, &stdout, &stderr); code != 0 {
				t.Fatalf("rtcp %s -h: exit status %d, %s", cmd[0], code, stderr.String())
			}
			help := stdout.String()
			for _, want := range []string{"[-stall-timeout DURATION]", "-stall-timeout duration", "before it is cut and logged", "(default 10s)"} {
				if !strings.Contains(help, want) {
					t.Errorf("rtcp %s -h does not say %q:\n%s", cmd[0], want, help)
				}
			}

			stdout.Reset()
			stderr.Reset()
			code := run(t.Context(), append(cmd, "-stall-timeout", "a while"), &stdout, &stderr)
			want := "rtcp " + cmd[0] + ": invalid value \"a while\" for flag -stall-timeout"
			if code != 2 || !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("a bad -stall-timeout: exit status %d, %q; want 2 and %q", code, stderr.String(), want)
			}
		})
	}
}

// TestWindowMemoryFlag: rtcp dp and rtcp expose set the window budget in
// MiB, say so in -h, and refuse a budget that is not positive.
func TestWindowMemoryFlag(t *testing.T) {
	for _, cmd := range [][]string{
		{"dp", "-listen", "127.0.0.1:0"},
		{"expose", "-dp", "127.0.0.1:1", "-name", "x", "-to", "127.0.0.1:1"},
	} {
		t.Run(cmd[0], func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), []string{cmd[0], "-h"}, &stdout, &stderr); code != 0 {
				t.Fatalf("rtcp %s -h: exit status %d, %s", cmd[0], code, stderr.String())
			}
			for _, want := range []string{"[-window-memory MiB]", "-window-memory MiB", "(default 512)"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("rtcp %s -h does not say %q", cmd[0], want)
				}
			}
			stdout.Reset()
			stderr.Reset()
			code := run(t.Context(), append(cmd, "-window-memory", "0"), &stdout, &stderr)
			if want := "-window-memory must be at least 1 (MiB)"; code != 2 || !strings.Contains(stderr.String(), want) {
				t.Errorf("-window-memory 0: exit status %d, %q; want 2 and %q", code, stderr.String(), want)
			}
		})
	}
}
