package delay

import (
	"testing"
	"time"
)

// TestArrivalStamp: on Linux a read of a TCP connection says when its
// bytes reached the host (the kernel's receive timestamp): between the
// write and the read's return, on the wall clock.
func TestArrivalStamp(t *testing.T) {
	a := dialTCP(t, serveTCP(t, echo))
	r := newRawReader(a)
	if r == nil || r.(*rawConn).oob == nil {
		t.Fatal("no receive timestamps on a TCP connection on Linux")
	}
	get := func() *[]byte { b := make([]byte, 16); return &b }
	// The kernel starts stamping a little after the first socket of the
	// system asks (net_enable_timestamp defers it): the first echoes may
	// come back without a stamp.
	for i := 0; ; i++ {
		before := time.Now().Round(0)
		if _, err := a.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		bp, n, arrived, err := r.read(get, func(*[]byte) {})
		after := time.Now().Round(0)
		if err != nil || n != 1 || string((*bp)[:n]) != "x" {
			t.Fatalf("read %d bytes, %v; want the echo of one", n, err)
		}
		if arrived.IsZero() {
			if i == 10000 {
				t.Fatal("10000 echoes read without a receive timestamp")
			}
			continue
		}
		// A millisecond of slack for the clocks' reading.
		if arrived.Before(before.Add(-time.Millisecond)) || arrived.After(after.Add(time.Millisecond)) {
			t.Errorf("arrived at %v; want between %v and %v", arrived, before, after)
		}
		break
	}
	a.CloseWrite()
	_, n, arrived, err := r.read(get, func(*[]byte) {})
	if n != 0 || err == nil || !arrived.IsZero() {
		t.Errorf("read at the end: %d bytes, %v, arrived %v; want none, EOF, no stamp", n, err, arrived)
	}
}

// TestDue: a chunk leaves half after the kernel received it, not after the
// relay's reader woke; never before it was read, and as after the read
// where the arrival is not known.
func TestDue(t *testing.T) {
	now := time.Now()
	half := time.Millisecond
	for _, tc := range []struct {
		name    string
		arrived time.Time
		want    time.Time
	}{
		{"not known", time.Time{}, now.Add(half)},
		{"read at once", now, now.Add(half)},
		{"read 300us late", now.Add(-300 * time.Microsecond), now.Add(700 * time.Microsecond)},
		{"read after half", now.Add(-5 * time.Millisecond), now},
		{"stamped after the read (the wall clock stepped back)", now.Add(time.Second), now.Add(half)},
	} {
		if got := due(now, tc.arrived, half); !got.Equal(tc.want) {
			t.Errorf("%s: due %v after now, want %v", tc.name, got.Sub(now), tc.want.Sub(now))
		}
	}
}
