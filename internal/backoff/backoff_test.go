package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelay(t *testing.T) {
	tests := []struct {
		n           int
		base, limit time.Duration
		want        time.Duration // the cap: results are in (0, want]
	}{
		{1, time.Second, time.Minute, time.Second},
		{2, time.Second, time.Minute, 2 * time.Second},
		{4, time.Second, time.Minute, 8 * time.Second},
		{20, time.Second, time.Minute, time.Minute},
		{1, time.Second, 0, time.Second}, // limit raised to base
		{1 << 20, time.Millisecond, time.Second, time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			d := Delay(tt.n, tt.base, tt.limit)
			if d <= 0 || d > tt.want {
				t.Fatalf("Delay(%d, %v, %v) = %v, want in (0, %v]", tt.n, tt.base, tt.limit, d, tt.want)
			}
		}
	}
	if d := Delay(3, 0, time.Second); d != 0 {
		t.Errorf("Delay with base 0 = %v, want 0", d)
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), time.Second); err != nil || time.Since(start) != time.Second {
			t.Fatalf("Sleep(1s) = %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Second); cancel() }()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); err != context.Canceled || time.Since(start) != time.Second {
			t.Fatalf("Sleep(1h) with ctx canceled after 1s = %v after %v", err, time.Since(start))
		}
	})
}
