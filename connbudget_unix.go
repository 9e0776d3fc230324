//go:build unix

package rtcp

import "syscall"

// openFileLimit returns the soft RLIMIT_NOFILE, or 0 if it cannot be read.
func openFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
