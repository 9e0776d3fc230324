//go:build unix && (!linux || race)

package sockio

import "syscall"

// Read is syscall.Read.
func Read(fd int, p []byte) (int, error) { return syscall.Read(fd, p) }

// Write is syscall.Write.
func Write(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }

// raw says that the calls here are raw system calls.
const raw = false

// nonblocking is true: syscall's functions may block.
func nonblocking(uintptr) bool { return true }
