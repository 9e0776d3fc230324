package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"rtcp/internal/flowtest"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// refusedDial is what dialling a loopback port nobody listens on returns.
func refusedDial(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{}, Err: &net.OpError{Op: "connect", Err: syscall.ECONNREFUSED}}
}

// TestListenWaitForDP: with WaitForDP, Listen dials again while the DP
// cannot be reached and returns, registered, once it can; errors from a
// DP that answers end it at once, as does its context.
func TestListenWaitForDP(t *testing.T) {
	dp := startDP(t, nil)
	listen(t, nil, dp, "taken")
	notDP := flowtest.Greeter(t, "SSH-2.0-OpenSSH_9\r\n")
	var nd net.Dialer

	t.Run("DP up after three failures", func(t *testing.T) {
		var attempts atomic.Int32
		lc := ListenConfig{WaitForDP: true, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if attempts.Add(1) <= 3 {
					return nil, refusedDial(addr)
				}
				return nd.DialContext(ctx, network, addr)
			}}
		l := listen(t, &lc, dp, "late")
		if n := attempts.Load(); n != 4 {
			t.Errorf("Listen dialled %d times, want 4", n)
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, err = io.WriteString(c, "up")
				c.Close()
			}
			accepted <- err
		}()
		c, err := Dial(dp, "late")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if b, err := io.ReadAll(c); string(b) != "up" || err != nil {
			t.Errorf("read %q, %v; want \"up\"", b, err)
		}
		if err := <-accepted; err != nil {
			t.Error(err)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		var attempts atomic.Int32
		lc := ListenConfig{WaitForDP: true, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if attempts.Add(1) <= 2 { // both DPs, the first time
					return nil, refusedDial(addr)
				}
				return nd.DialContext(ctx, network, addr)
			}}
		listen(t, &lc, dp+","+dp, "late-cluster")
		if n := attempts.Load(); n < 4 {
			t.Errorf("Listen dialled %d times, want at least 4", n)
		}
	})

	for _, tt := range []struct {
		name, dp, server string
		want             error
	}{
		{"name taken", dp, "taken", ErrNameTaken},
		{"not a DP", notDP, "x", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			lc := ListenConfig{WaitForDP: true, MinBackoff: time.Millisecond,
				Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					attempts.Add(1)
					return nd.DialContext(ctx, network, addr)
				}}
			l, err := lc.Listen(t.Context(), tt.dp, tt.server)
			if err == nil {
				l.Close()
				t.Fatal("Listen succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Listen: %v, want %v", err, tt.want)
			}
			if n := attempts.Load(); n != 1 {
				t.Errorf("Listen dialled %d times, want 1: %v", n, err)
			}
		})
	}
}

// TestListenWaitForDPBackoff: while the DP stays unreachable, the waits
// between attempts grow to MaxBackoff and no further, and the end of the
// context ends Listen with the context's error. Without WaitForDP one
// failure ends it.
func TestListenWaitForDPBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var times []time.Time
		lc := ListenConfig{WaitForDP: true, MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				times = append(times, time.Now())
				return nil, refusedDial(addr)
			}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		_, err := lc.Listen(ctx, "dp.invalid:9000", "x")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Listen: %v, want the context's deadline", err)
		}
		// 5 minutes of waits of at most 8 s: at least 37 attempts.
		if len(times) < 5*60/8 {
			t.Errorf("%d attempts in 5 minutes, want at least %d", len(times), 5*60/8)
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap > 8*time.Second {
				t.Errorf("attempt %d came %v after the one before, more than MaxBackoff", i, gap)
			}
		}

		times = nil
		lc.WaitForDP = false
		if _, err := lc.Listen(t.Context(), "dp.invalid:9000", "x"); err == nil || len(times) != 1 {
			t.Errorf("without WaitForDP: %v after %d attempts, want an error after 1", err, len(times))
		}
	})
}
