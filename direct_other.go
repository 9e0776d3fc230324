//go:build !linux

package rtcp

import (
	"net"
	"time"

	"rtcp/internal/punch"
)

// dpControl prepares the socket of a connection to the DP for a side
// that punches.
var dpControl = punch.Control

// setUserTimeout does nothing here: only keepalive watches a direct path.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
