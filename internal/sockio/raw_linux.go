//go:build linux && !race

package sockio

import (
	"syscall"
	"unsafe"
)

// Read is syscall.Read for a descriptor that does not block.
func Read(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Write is syscall.Write for a descriptor that does not block.
func Write(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Splice is syscall.Splice without offsets, for descriptors that do not
// block; flags must include SPLICE_F_NONBLOCK.
func Splice(rfd, wfd, n int, flags int) (int64, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), uintptr(flags))
	if e != 0 {
		return -1, e
	}
	return int64(r), nil
}

// raw says that the calls here are raw system calls.
const raw = true

// nonblocking reports whether fd's open file description has O_NONBLOCK.
func nonblocking(fd uintptr) bool {
	fl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	return e == 0 && fl&syscall.O_NONBLOCK != 0
}

func writev(fd int, iov []syscall.Iovec) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
