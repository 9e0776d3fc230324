//go:build !unix

package sockio

import (
	"io"
	"syscall"
)

// ReaderOf returns r: raw reads are only on unix.
func ReaderOf(r io.Reader) io.Reader { return r }

// WriterOf returns w: raw writes are only on unix.
func WriterOf(w io.Writer) io.Writer { return w }

// NonBlocking is true: no call here is raw.
func NonBlocking(syscall.RawConn) bool { return true }
