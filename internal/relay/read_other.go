//go:build !unix

package relay

import "net"

// Raw reads are only on unix; elsewhere every source is read through Read.
func newRawReader(*net.TCPConn) rawSource { return nil }

// writerOf returns dst.Write: raw writes are only on unix.
func writerOf(dst net.Conn) func([]byte) (int, error) { return dst.Write }
