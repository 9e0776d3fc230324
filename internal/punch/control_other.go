//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package punch

import (
	"fmt"
	"runtime"
	"syscall"
)

// Control would set SO_REUSEADDR and SO_REUSEPORT; on this system punch
// does not know how, so a direct path is never tried.
func Control(network, address string, c syscall.RawConn) error {
	return fmt.Errorf("%w: binding a port twice is not supported on %s", ErrNoPath, runtime.GOOS)
}

// listenControl is Control for a listener.
func listenControl(network, address string, c syscall.RawConn) error {
	return Control(network, address, c)
}
