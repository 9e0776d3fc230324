//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package punch

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control sets SO_REUSEADDR and SO_REUSEPORT on a socket before it is
// bound: both the connection toward the rendezvous and the punch's must
// have them, for the punch to bind the same port while the first is open.
// It fits net.Dialer.Control and net.ListenConfig.Control.
func Control(network, address string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err == nil {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("punch: set SO_REUSEADDR and SO_REUSEPORT: %w", err)
	}
	return nil
}

// listenControl is Control for a listener: Go sets SO_REUSEADDR on every
// listener itself, so it sets SO_REUSEPORT only.
func listenControl(network, address string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("punch: set SO_REUSEPORT: %w", err)
	}
	return nil
}
