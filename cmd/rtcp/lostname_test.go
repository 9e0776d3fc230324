package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rtcp"
)

// noticeRegistry is a DP's registry that tells a test each name it
// unregisters: when the DP has let a name go.
type noticeRegistry struct {
	*rtcp.MemoryRegistry
	gone chan string
}

func (r noticeRegistry) Unregister(ctx context.Context, reg rtcp.Registration) error {
	err := r.MemoryRegistry.Unregister(ctx, reg)
	select {
	case r.gone <- reg.Name:
	default: // nobody is waiting for more
	}
	return err
}

// startNoticeDP runs a DP on loopback until the test ends; its channel
// gets each name it unregisters.
func startNoticeDP(t *testing.T) (addr string, gone <-chan string) {
	t.Helper()
	reg := noticeRegistry{new(rtcp.MemoryRegistry), make(chan string, 16)}
	dp := &rtcp.DiscoverPoint{Registry: reg}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	t.Cleanup(func() {
		dp.Close()
		<-served
	})
	return l.Addr().String(), reg.gone
}

// front is a TCP relay to a DP that a test can cut (every connection
// closed, and new ones refused) and open again on the same address.
type front struct {
	addr, to string
	t        *testing.T
	wg       sync.WaitGroup

	mu    sync.Mutex // guards l and conns
	l     net.Listener
	conns []net.Conn
}

func startFront(t *testing.T, to string) *front {
	f := &front{addr: closedPort(t), to: to, t: t}
	f.open()
	t.Cleanup(f.cut)
	return f
}

func (f *front) open() {
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.l = l
	f.mu.Unlock()
	f.wg.Go(func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", f.to)
			if err != nil {
				a.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, a, b)
			f.mu.Unlock()
			// Each way ends with a half-close, as TCP's own, and both
			// connections close once both ways have ended: the tcp
			// transport's data links carry a session's half-close so.
			var ends sync.WaitGroup
			pipe := func(dst, src net.Conn) {
				defer ends.Done()
				if _, err := io.Copy(dst, src); err != nil {
					dst.Close()
					src.Close()
					return
				}
				dst.(*net.TCPConn).CloseWrite()
			}
			ends.Add(2)
			f.wg.Go(func() { pipe(a, b) })
			f.wg.Go(func() { pipe(b, a) })
			f.wg.Go(func() {
				ends.Wait()
				a.Close()
				b.Close()
			})
		}
	})
}

func (f *front) cut() {
	f.mu.Lock()
	if f.l != nil {
		f.l.Close()
	}
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// takeName cuts expose's way to the DP, and has another server take its
// name once the DP has let it go; then expose can reach the DP again.
func takeName(t *testing.T, f *front, dp string, gone <-chan string, name string) {
	t.Helper()
	f.cut()
	select {
	case n := <-gone:
		if n != name {
			t.Fatalf("the DP unregistered %q, want %q", n, name)
		}
	case <-time.After(time.Minute):
		t.Fatal("the DP did not let the name go within a minute of the cut")
	}
	l, err := rtcp.Listen(dp, name)
	if err != nil {
		t.Fatalf("the other server: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	f.open()
}

// TestExposeLostName: expose whose name another server took while its
// link was down exits, after -lost-name-timeout, with status 6 and an
// error that says so.
func TestExposeLostName(t *testing.T) {
	dp, gone := startNoticeDP(t)
	f := startFront(t, dp)
	out := newJSONLog()
	done := make(chan error, 1)
	go func() {
		done <- runExpose(t.Context(), []string{"-dp", f.addr, "-name", "printer", "-to", startEcho(t),
			"-max-backoff", "20ms", "-lost-name-timeout", "50ms", "-log-format", "json"}, io.Discard, out)
	}()
	out.wait(t, "serving record", withAttr("rtcp expose: serving", "addr", "printer@"))
	takeName(t, f, dp, gone, "printer")

	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("expose still runs a minute after it lost its name")
	}
	var xe *exitError
	if !errors.As(err, &xe) || xe.code != exitNameLost {
		t.Fatalf("expose returned %v, want exit status %d", err, exitNameLost)
	}
	if code := finish(lookup("expose"), err, io.Discard); code != 6 {
		t.Errorf("exit status %d, want 6", code)
	}
}

// TestExposeBinaryHangupAndLostName runs the built command: SIGHUP leaves
// expose serving, and a name lost ends it with exit status 6.
func TestExposeBinaryHangupAndLostName(t *testing.T) {
	needSlow(t)
	bin := buildCommand(t)
	dp, gone := startNoticeDP(t)
	f := startFront(t, dp)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang fails, not blocks
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "expose", "-dp", f.addr, "-name", "printer", "-to", startEcho(t),
		"-max-backoff", "20ms", "-lost-name-timeout", "100ms", "-log-format", "json")
	out := newJSONLog()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	out.wait(t, "serving record", withAttr("rtcp expose: serving", "addr", "printer@"))

	for range 2 {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		var stdout strings.Builder
		if err := connect(ctx, []string{"-stdio", "-dp", dp, "-name", "printer"}, strings.NewReader("ping"), &stdout, io.Discard); err != nil {
			t.Fatalf("a session after SIGHUP: %v", err)
		}
		if want := "ping" + trailer(4); stdout.String() != want {
			t.Errorf("read %q after SIGHUP, want %q", stdout.String(), want)
		}
	}

	takeName(t, f, dp, gone, "printer")
	err := <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitNameLost {
		out.mu.Lock()
		defer out.mu.Unlock()
		t.Fatalf("expose ended with %v, want exit status %d; stderr:\n%s", err, exitNameLost, out.all.String())
	}
}
