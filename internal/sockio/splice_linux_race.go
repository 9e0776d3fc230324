//go:build linux && race

package sockio

import (
	"syscall"
	"unsafe"
)

// Splice is syscall.Splice without offsets.
func Splice(rfd, wfd, n int, flags int) (int64, error) {
	return syscall.Splice(rfd, nil, wfd, nil, n, flags)
}

func writev(fd int, iov []syscall.Iovec) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
