package tcpreset

import (
	"syscall"
	"unsafe"
)

// tcpClose is TCP_CLOSE, the state a socket is left in by a reset.
const tcpClose = 7

// closedState reports whether the socket fd is in state CLOSE.
func closedState(fd uintptr) bool {
	var info syscall.TCPInfo
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	return errno == 0 && info.State == tcpClose
}
