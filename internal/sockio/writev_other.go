//go:build unix && !linux

package sockio

import "net"

// Writev writes all of bufs in order, as net.Buffers' WriteTo does for a
// *net.TCPConn (writev where the system has it; raw calls are only on
// linux).
func (t *TCP) Writev(bufs [][]byte) (int64, error) {
	nb := net.Buffers(bufs)
	return nb.WriteTo(t.c)
}
