//go:build linux && !386 && !s390x

package sockio

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// TestInq: a read through an Inq says how many bytes are left, 0 when
// the next read would find nothing, and 1 when only the peer's FIN is
// left, so that the read that finds the end is made, but 0 when only a
// reset is (the read after tells it); and it allocates nothing.
func TestInq(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	rb := rawOf(t, b)
	if !EnableInq(rb) {
		t.Skip("no TCP_INQ: Linux before 4.18")
	}
	var q Inq
	buf := make([]byte, 16)
	// read waits for ready to be true of b, then reads into buf[:n].
	read := func(n int, ready func(fd int) bool) (int, int, error) {
		var (
			k, left int
			err     error
		)
		if rerr := rb.Read(func(fd uintptr) bool {
			if !ready(int(fd)) {
				return false
			}
			k, left, err = q.Read(int(fd), buf[:n])
			return true
		}); rerr != nil {
			t.Fatal(rerr)
		}
		return k, left, err
	}
	inq := func(n int) func(int) bool {
		return func(fd int) bool {
			m, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
			return err == nil && m >= n
		}
	}
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if k, left, err := read(2, inq(5)); k != 2 || left != 3 || err != nil {
		t.Fatalf("read 2 of 5 = %d, left %d, %v; want 2, left 3", k, left, err)
	}
	if k, left, err := read(16, inq(3)); k != 3 || left != 0 || err != nil || string(buf[:3]) != "llo" {
		t.Fatalf("read the rest = %q, left %d, %v; want llo, left 0", buf[:k], left, err)
	}
	if k, _, err := read(16, inq(0)); err != syscall.EAGAIN {
		t.Fatalf("read of an empty socket = %d, %v; want EAGAIN", k, err)
	}

	if _, err := a.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	a.CloseWrite()
	finned := func(fd int) bool { // b has the FIN (CLOSE_WAIT)
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err == nil && info.State == 8
	}
	// The FIN counts as a byte: 2 are left after the first.
	if k, left, err := read(1, finned); k != 1 || left < 1 || err != nil {
		t.Fatalf("read 1 of 2 before a FIN = %d, left %d, %v; want 1, left > 0", k, left, err)
	}
	if k, left, err := read(1, finned); k != 1 || left != 1 || err != nil {
		t.Fatalf("read of the last byte before a FIN = %d, left %d, %v; want 1, left 1 (the end is still to be read)", k, left, err)
	}
	if k, _, err := read(16, finned); k != 0 || err != nil {
		t.Fatalf("read at the end = %d, %v; want 0, nil", k, err)
	}

	// A reset is not counted: the read of the bytes before it says 0
	// left, and the next read tells the reset.
	c, d := flowtest.TCPPair(t)
	rd := rawOf(t, d)
	if !EnableInq(rd) {
		t.Fatal("TCP_INQ on one socket and not on another")
	}
	if _, err := c.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close()
	for deadline := time.Now().Add(time.Minute); !tcpreset.WasReset(d); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("no reset within a minute")
		}
	}
	rd.Control(func(fd uintptr) {
		if k, left, err := q.Read(int(fd), buf); k != 6 || left != 0 || err != nil {
			t.Errorf("read of the bytes before a reset = %d, left %d, %v; want 6, left 0", k, left, err)
		}
		if _, _, err := q.Read(int(fd), buf); err != syscall.ECONNRESET {
			t.Errorf("read after the bytes before a reset: %v, want ECONNRESET", err)
		}
	})

	var fd int
	rb.Control(func(f uintptr) { fd = int(f) })
	if n := testing.AllocsPerRun(100, func() { q.Read(fd, buf) }); n != 0 {
		t.Errorf("a read allocates %v times; want 0", n)
	}
}
