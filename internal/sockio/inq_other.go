//go:build unix && (!linux || 386 || s390x)

package sockio

import "syscall"

// EnableInq reports false: TCP_INQ is Linux's, and on 386 and s390x
// recvmsg is not a system call of its own.
func EnableInq(syscall.RawConn) bool { return false }

// An Inq reads as Read does, and never says what is left.
type Inq struct{}

// Read reads into p from fd as Read does; left is -1: unknown.
func (*Inq) Read(fd int, p []byte) (n, left int, err error) {
	n, err = Read(fd, p)
	return n, -1, err
}
