package sockio

import (
	"io"
	"syscall"
	"testing"

	"rtcp/internal/flowtest"
)

// TestSplice moves bytes from a socket through a pipe to another socket.
func TestSplice(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	c, d := flowtest.TCPPair(t)
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if _, err := a.Write([]byte("spliced")); err != nil {
		t.Fatal(err)
	}
	const nonblock = 2 // SPLICE_F_NONBLOCK
	var in int64
	err := rawOf(t, b).Read(func(fd uintptr) bool {
		var e error
		in, e = Splice(int(fd), p[1], 64, nonblock)
		return e != syscall.EAGAIN
	})
	if err != nil || in != 7 {
		t.Fatalf("splice in: %d, %v; want 7", in, err)
	}
	var out int64
	var serr error
	rawOf(t, c).Control(func(fd uintptr) { out, serr = Splice(p[0], int(fd), int(in), nonblock) })
	if out != 7 || serr != nil {
		t.Fatalf("splice out: %d, %v; want 7", out, serr)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(d, buf); err != nil || string(buf) != "spliced" {
		t.Fatalf("read %q, %v; want spliced", buf, err)
	}
}
