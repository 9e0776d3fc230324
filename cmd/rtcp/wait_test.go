package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// TestExposeWaitsForDP: expose started before its DP logs that it cannot
// reach it, keeps trying, and serves once the DP is up.
func TestExposeWaitsForDP(t *testing.T) {
	dpAddr := closedPort(t)
	echo := startEcho(t)
	ctx, cancel := context.WithCancel(t.Context())
	out := newJSONLog()
	done := make(chan error, 1)
	go func() {
		done <- runExpose(ctx, []string{"-dp", dpAddr, "-name", "late", "-to", echo, "-max-backoff", "20ms", "-log-format", "json"}, io.Discard, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("expose returned %v after cancel", err)
		}
	}()
	retrying := func(m map[string]any) bool {
		return m["msg"] == "rtcp: cannot reach DP; retrying" && m["name"] == "late"
	}
	out.wait(t, "retry", retrying)
	out.wait(t, "second retry", retrying)

	mustLaunch(t, runDP, "-listen", dpAddr)
	out.wait(t, "serving record", withAttr("rtcp expose: serving", "addr", "late@"))
	var stdout bytes.Buffer
	if err := connect(t.Context(), []string{"-stdio", "-dp", dpAddr, "-name", "late"}, strings.NewReader("ping"), &stdout, io.Discard); err != nil {
		t.Fatalf("connect -stdio: %v", err)
	}
	if want := "ping" + trailer(4); stdout.String() != want {
		t.Errorf("read %q, want %q", stdout.String(), want)
	}
}

// TestConnectWaitsForDP: connect -max-backoff dials a DP that cannot be
// reached again until it can, and the session then goes through.
func TestConnectWaitsForDP(t *testing.T) {
	dp := stdioServers(t)
	front := closedPort(t) // where the DP will be reachable
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := newJSONLog()
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- connect(ctx, []string{"-stdio", "-dp", front, "-name", "echo", "-max-backoff", "20ms", "-log-format", "json"}, strings.NewReader("ping"), &stdout, out)
	}()
	retrying := func(m map[string]any) bool { return m["msg"] == "cannot reach DP; retrying" && m["dp"] == front }
	out.wait(t, "retry", retrying)
	out.wait(t, "second retry", retrying)
	relayTo(t, front, dp, nil)
	if err := <-done; err != nil {
		t.Fatalf("connect -stdio: %v", err)
	}
	if want := "ping" + trailer(4); stdout.String() != want {
		t.Errorf("read %q, want %q", stdout.String(), want)
	}
}

// relayTo listens on addr and carries each connection to to, both ways
// with half-close, until the test ends. It returns the address it
// listens on. If tap is not nil, it is called on a goroutine of its own
// for each connection with what the client sends, which it must read to
// the end.
func relayTo(t *testing.T, addr, to string, tap func(io.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				a.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, a, b)
			mu.Unlock()
			var src io.Reader = a
			var tapped *io.PipeWriter
			if tap != nil {
				pr, pw := io.Pipe()
				src, tapped = io.TeeReader(a, pw), pw
				wg.Go(func() { tap(pr) })
			}
			wg.Go(func() {
				io.Copy(b, src)
				if tapped != nil {
					tapped.Close()
				}
				b.(*net.TCPConn).CloseWrite()
			})
			wg.Go(func() {
				io.Copy(a, b)
				a.(*net.TCPConn).CloseWrite()
			})
		}
	})
	return l.Addr().String()
}
