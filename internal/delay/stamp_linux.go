package delay

import (
	"syscall"
	"time"
	"unsafe"
)

// stampSpace holds the control message of a receive timestamp.
var stampSpace = syscall.CmsgSpace(int(unsafe.Sizeof(syscall.Timespec{})))

// stamp asks the kernel for the time each read's bytes were received
// (SO_TIMESTAMPNS: for TCP, that of the last segment read), and reports
// whether it will tell.
func stamp(rc syscall.RawConn) bool {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); cerr != nil {
		return false
	}
	return err == nil
}

// arrival returns the receive timestamp among the control messages oob
// of a read, or the zero time if there is none.
func arrival(oob []byte) time.Time {
	head := syscall.CmsgLen(0)
	for len(oob) >= head {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < head || l > len(oob) {
			return time.Time{}
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l-head >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[head]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		next := syscall.CmsgSpace(l - head)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}
}
