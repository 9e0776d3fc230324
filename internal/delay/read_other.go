//go:build !unix

package delay

import (
	"net"
	"time"
)

// rawReader reads a connection without holding a buffer while idle; only
// on unix. Elsewhere every connection is read through Read.
type rawReader interface {
	read(get func() *[]byte, put func(*[]byte)) (*[]byte, int, time.Time, error)
}

func newRawReader(net.Conn) rawReader { return nil }

func stampListener(net.Listener) {}
