package bench

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// piped returns the bytes in the pipes that process pid has open: where
// rtcp keeps a burst that a relayed stream's destination has no room for
// (internal/mux, queue.go), memory of the process's that its RSS does not
// show.
func piped(pid int) (int64, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	seen := make(map[string]bool) // a pipe's two ends are one pipe
	for _, e := range es {
		t, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if inode, ok := strings.CutPrefix(t, "pipe:["); ok && !seen[inode] {
			seen[inode] = true
			n += int64(inPipe(dir + "/" + e.Name()))
		}
	}
	return n, nil
}

// inPipe returns the bytes in the pipe that path (/proc/PID/fd/N) is an
// end of, or 0 if it cannot tell: it opens the pipe anew, without taking
// its bytes, and asks (FIONREAD).
func inPipe(path string) int {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		var v int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&v))); errno == 0 {
			n = int(v)
		}
	})
	return n
}

// fionread is Linux's FIONREAD: the bench reads /proc, so Linux is where
// it counts.
const fionread = 0x541b
