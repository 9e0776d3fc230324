//go:build !unix

package relay

import "net"

// Raw reads are only on unix; elsewhere every source is read through Read.
func newRawReader(*net.TCPConn) rawSource { return nil }
