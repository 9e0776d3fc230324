package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	build := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "rtcp", Version: version}}
		for i := 0; i < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	tests := []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{build("v1.2.3", "GOOS", "linux", "GOARCH", "arm64", "vcs.revision", "0123abcd", "vcs.time", "2026-12-05T12:00:00Z", "vcs.modified", "false"),
			"rtcp v1.2.3 revision 0123abcd (2026-12-05T12:00:00Z) go1.26.8 linux/arm64"},
		{build("(devel)", "GOOS", "linux", "GOARCH", "amd64", "vcs.revision", "0123abcd", "vcs.modified", "true"),
			"rtcp (devel) revision 0123abcd+modified go1.26.8 linux/amd64"},
		{build("", "GOOS", "darwin", "GOARCH", "arm64"),
			"rtcp (unknown) revision unknown (built outside a git checkout, or with -buildvcs=false) go1.26.8 darwin/arm64"},
	}
	for _, tt := range tests {
		if got := versionLine(tt.bi); got != tt.want {
			t.Errorf("versionLine =\n\t%s\nwant\n\t%s", got, tt.want)
		}
	}
	if got := versionLine(nil); !strings.HasPrefix(got, "rtcp (unknown) revision unknown") {
		t.Errorf("versionLine(nil) = %q", got)
	}
}

// TestVersionCommand: "rtcp version", "rtcp -version" and "rtcp
// --version" print the same line on stdout.
func TestVersionCommand(t *testing.T) {
	var first string
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("rtcp %v: exit status %d, stderr %q", args, code, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "rtcp ") || strings.Count(out, "\n") != 1 {
			t.Errorf("rtcp %v printed %q, want one line starting \"rtcp \"", args, out)
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("rtcp %v printed %q, rtcp version %q", args, out, first)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"version", "now"}, &stdout, &stderr); code != 2 {
		t.Errorf("rtcp version now: exit status %d, want 2", code)
	}
}

// TestVersionBinary: the built command names the revision that the Go
// toolchain recorded in it (go version -m), or says it has none.
func TestVersionBinary(t *testing.T) {
	needSlow(t)
	bin := buildCommand(t, "-buildvcs=auto") // over a GOFLAGS=-buildvcs=false: stamp the revision in a git checkout
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("rtcp -version: %v", err)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	rev := regexp.MustCompile(`(?m)^\s+build\s+vcs\.revision=(\S+)$`).FindSubmatch(info)
	modified := bytes.Contains(info, []byte("vcs.modified=true"))
	switch {
	case rev == nil:
		if !bytes.Contains(out, []byte("revision unknown")) {
			t.Errorf("rtcp -version = %q, but go version -m finds no revision:\n%s", out, info)
		}
	case !bytes.Contains(out, append([]byte("revision "), rev[1]...)):
		t.Errorf("rtcp -version = %q, want revision %s", out, rev[1])
	case modified != bytes.Contains(out, []byte("+modified")):
		t.Errorf("rtcp -version = %q, but go version -m says modified=%v", out, modified)
	}
}
