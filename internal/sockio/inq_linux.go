//go:build linux && !386 && !s390x

package sockio

import (
	"syscall"
	"unsafe"
)

// tcpInq is TCP_INQ, the socket option, and TCP_CM_INQ, its control
// message (linux/tcp.h; Linux 4.18 and later).
const tcpInq = 36

// EnableInq asks the kernel to tell, after each read of rc's TCP
// socket through an Inq, how many bytes are left to read. It reports
// false where it cannot (a kernel before 4.18, not TCP); an Inq's reads
// then say nothing of what is left.
func EnableInq(rc syscall.RawConn) bool {
	ok := false
	err := rc.Control(func(fd uintptr) {
		ok = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpInq, 1) == nil
	})
	return err == nil && ok
}

// An Inq reads a TCP socket that does not block and has TCP_INQ
// (EnableInq), and tells after each read how many bytes are left. Its
// zero value is ready; it is not safe for concurrent use.
type Inq struct {
	msg syscall.Msghdr
	iov syscall.Iovec
	oob [2 * syscall.SizeofCmsghdr]byte
}

// inqData is where a control message's data starts: after its header,
// aligned as the kernel aligns it (CMSG_ALIGN, to the size of a long).
const inqData = (syscall.SizeofCmsghdr + unsafe.Sizeof(uintptr(0)) - 1) &^ (unsafe.Sizeof(uintptr(0)) - 1)

// Read reads into p from fd as Read does, and returns with it how many
// bytes were left to read after it: 0 means that a read now would find
// no bytes, but not that it would find nothing: a reset is not counted,
// and one that came behind bytes is told by the read after them (0 left,
// then ECONNRESET); a positive count may be more than is there to read
// (it is 1 after the peer's FIN when nothing else is left, so that the
// read that finds the end is made); -1 means that the kernel did not say.
func (q *Inq) Read(fd int, p []byte) (n, left int, err error) {
	q.iov.Base = unsafe.SliceData(p)
	q.iov.SetLen(len(p))
	q.msg.Iov = &q.iov
	q.msg.Iovlen = 1
	q.msg.Control = &q.oob[0]
	q.msg.SetControllen(len(q.oob))
	q.msg.Flags = 0
	var (
		r uintptr
		e syscall.Errno
	)
	if raw {
		r, _, e = syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&q.msg)), 0)
	} else {
		r, _, e = syscall.Syscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&q.msg)), 0)
	}
	if e != 0 {
		return -1, -1, e
	}
	left = -1
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&q.oob[0]))
	if uint64(q.msg.Controllen) >= uint64(inqData)+4 && h.Level == syscall.IPPROTO_TCP && h.Type == tcpInq && uint64(h.Len) >= uint64(inqData)+4 {
		left = int(*(*int32)(unsafe.Pointer(&q.oob[inqData])))
	}
	return int(r), left, nil
}
