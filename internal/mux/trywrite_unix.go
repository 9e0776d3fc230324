//go:build unix

package mux

import (
	"syscall"

	"rtcp/internal/sockio"
)

// tryWrite writes what the socket takes of p without waiting.
func tryWrite(rc syscall.RawConn, p []byte) (int, error) { return sockio.TryWrite(rc, p) }
