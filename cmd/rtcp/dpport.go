package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"golang.org/x/sync/errgroup"

	"rtcp"
)

// A portFlag is dp's repeatable -port NAME=ADDR: port mode, plain TCP on
// ADDR carried to the server NAME.
type portFlag struct{ ports [][2]string } // [name, address]

func (f *portFlag) String() string {
	s := make([]string, len(f.ports))
	for i, p := range f.ports {
		s[i] = p[0] + "=" + p[1]
	}
	return strings.Join(s, ",")
}

func (f *portFlag) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return errors.New("want NAME=ADDR, e.g. pi-7=:2222")
	}
	if err := validName(name, true); err != nil {
		return fmt.Errorf("NAME %w", err)
	}
	for _, p := range f.ports {
		if p[1] == addr {
			return fmt.Errorf("address %s is already given to %q", addr, p[0])
		}
	}
	f.ports = append(f.ports, [2]string{name, addr})
	return nil
}

// listenPorts listens on the address of each port, as a door of doors,
// closing them all if one fails.
func listenPorts(ports [][2]string, doors *dpDoors) ([]net.Listener, error) {
	var lns []net.Listener
	for _, p := range ports {
		l, err := doors.listen("port "+p[0], p[1], 0)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("-port %s=%s: %w", p[0], p[1], err)
		}
		lns = append(lns, l)
	}
	return lns, nil
}

// servePorts serves each listener in port mode until the DP is closed and
// returns a function that waits for them.
func servePorts(dp *rtcp.DiscoverPoint, ports [][2]string, lns []net.Listener, log *slog.Logger) (wait func()) {
	// Each ServePort ends with the DP (ErrDiscoverPointClosed), so the
	// group's error says nothing new: only the waiting matters.
	var g errgroup.Group
	for i, l := range lns {
		name := ports[i][0]
		ready(log, "rtcp dp: port", "addr", l.Addr().String(), "name", name)
		g.Go(func() error { return dp.ServePort(l, name) })
	}
	return func() { g.Wait() }
}
