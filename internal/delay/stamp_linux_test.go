package delay

import (
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"
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

// TestArrivalParse: the receive timestamp is found among a read's control
// messages wherever it is, and control messages cut short or of a bad
// length give no time rather than a wrong one or a panic.
func TestArrivalParse(t *testing.T) {
	ts := syscall.Timespec{Sec: 1_700_000_000, Nsec: 123_456_789}
	want := time.Unix(1_700_000_000, 123_456_789)
	msg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, syscall.CmsgSpace(len(data)))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(syscall.CmsgLen(len(data)))
		copy(b[syscall.CmsgLen(0):], data)
		return b
	}
	stampBytes := unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
	stamp := msg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, stampBytes)
	other := msg(syscall.SOL_IP, syscall.IP_TTL, []byte{64, 0, 0, 0})
	short := msg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, stampBytes[:4])
	badLen := slices.Clone(stamp)
	(*syscall.Cmsghdr)(unsafe.Pointer(&badLen[0])).SetLen(len(badLen) + 1)
	zeroLen := slices.Clone(stamp)
	(*syscall.Cmsghdr)(unsafe.Pointer(&zeroLen[0])).SetLen(0)
	for _, tc := range []struct {
		name string
		oob  []byte
		want time.Time
	}{
		{"the stamp", stamp, want},
		{"after another message", slices.Concat(other, stamp), want},
		{"none", nil, time.Time{}},
		{"another message alone", other, time.Time{}},
		{"a stamp too short", short, time.Time{}},
		{"a header cut short", stamp[:syscall.CmsgLen(0)-1], time.Time{}},
		{"a stamp cut short", stamp[:len(stamp)-1], time.Time{}},
		{"a length past the end", badLen, time.Time{}},
		{"a length of zero", zeroLen, time.Time{}},
	} {
		// A copy in a buffer of its own, aligned as a read's is.
		oob := make([]byte, len(tc.oob), len(tc.oob)+8)
		copy(oob, tc.oob)
		if got := arrival(oob); !got.Equal(tc.want) {
			t.Errorf("%s: arrival %v, want %v", tc.name, got, tc.want)
		}
	}
}
