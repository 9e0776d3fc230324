//go:build linux

package sockio

import (
	"os"
	"syscall"
)

// maxVecs is the most buffers one writev takes (IOV_MAX; more is EINVAL),
// as in net.Buffers' WriteTo.
const maxVecs = 1024

// Writev writes all of bufs in order, with as few system calls as the
// socket's room allows (net.Buffers' WriteTo does the same for a
// *net.TCPConn).
func (t *TCP) Writev(bufs [][]byte) (int64, error) {
	var (
		n    int64
		werr error
	)
	iov := make([]syscall.Iovec, 0, min(len(bufs), maxVecs))
	err := t.rc.Write(func(fd uintptr) bool {
		for {
			for len(bufs) > 0 && len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
			if len(bufs) == 0 {
				return true
			}
			iov = iov[:0]
			for _, b := range bufs {
				if len(b) == 0 {
					continue
				}
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				iov = append(iov, v)
				if len(iov) == maxVecs {
					break // the rest in the next call
				}
			}
			m, e := writev(int(fd), iov)
			if e == syscall.EINTR {
				continue
			}
			if e == syscall.EAGAIN {
				return false // wait for room
			}
			if e != nil {
				werr = os.NewSyscallError("writev", e)
				return true
			}
			n += int64(m)
			for m > 0 {
				k := min(m, len(bufs[0]))
				bufs[0] = bufs[0][k:]
				m -= k
				if len(bufs[0]) == 0 {
					bufs = bufs[1:]
				}
			}
		}
	})
	if err != nil {
		return n, opError("writev", t.c, unwrapOp(err))
	}
	if werr != nil {
		return n, opError("writev", t.c, werr)
	}
	return n, nil
}
