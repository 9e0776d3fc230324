package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestExposeWaitsForDP: expose started before its DP logs that it cannot
// reach it, keeps trying, and serves once the DP is up.
func TestExposeWaitsForDP(t *testing.T) {
	dpAddr := closedPort(t)
	echo := startEcho(t)
	ctx, cancel := context.WithCancel(t.Context())
	out := newLines()
	done := make(chan error, 1)
	go func() {
		done <- runExpose(ctx, []string{"-dp", dpAddr, "-name", "late", "-to", echo, "-max-backoff", "20ms"}, io.Discard, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("expose returned %v after cancel", err)
		}
	}()
	out.wait(t, regexp.MustCompile(`(cannot reach DP; retrying)`))
	out.wait(t, regexp.MustCompile(`(cannot reach DP; retrying)`)) // and again

	mustLaunch(t, runDP, "-listen", dpAddr)
	out.wait(t, regexp.MustCompile(`^rtcp expose: (serving) late@`))
	var stdout bytes.Buffer
	if err := connect(t.Context(), []string{"-stdio", "-dp", dpAddr, "-name", "late"}, strings.NewReader("ping"), &stdout, io.Discard); err != nil {
		t.Fatalf("connect -stdio: %v", err)
	}
	if want := "ping" + trailer(4); stdout.String() != want {
		t.Errorf("read %q, want %q", stdout.String(), want)
	}
}
