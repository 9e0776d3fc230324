// Package backoff computes the waits between attempts to reach a peer that
// is down: exponential, capped, with full jitter so that many clients that
// lost the same peer do not all come back at the same instant.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before attempt n (n >= 1): a random duration in
// (0, d], where d is base doubled n-1 times and capped at limit. A base of
// 0 or less waits nothing; a limit below base is raised to base.
func Delay(n int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	limit = max(limit, base)
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return time.Duration(rand.Int64N(int64(d))) + 1
}

// Sleep waits for d or until ctx is done, whichever is first; it returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
