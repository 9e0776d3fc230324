//go:build !unix

package mux

import "syscall"

// tryWrite writes nothing here: without a non-blocking write(2) the read
// loop leaves every byte to WriteTo, which writes them with w.Write.
func tryWrite(rc syscall.RawConn, p []byte) (int, error) { return 0, nil }
