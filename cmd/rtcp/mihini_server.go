package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"rtcp/mihini"
)

// mapFlag is mihini-server's repeatable -map CLIENT_ADDR=SERVICE_HOST:PORT.
type mapFlag struct{ maps [][2]string } // [client address, service]

func (f *mapFlag) String() string {
	s := make([]string, len(f.maps))
	for i, m := range f.maps {
		s[i] = m[0] + "=" + m[1]
	}
	return strings.Join(s, ",")
}

func (f *mapFlag) Set(v string) error {
	addr, service, ok := strings.Cut(v, "=")
	if !ok || addr == "" {
		return errors.New("want CLIENT_ADDR=SERVICE_HOST:PORT, e.g. :2222=127.0.0.1:22")
	}
	if err := checkService(service); err != nil {
		return err
	}
	f.maps = append(f.maps, [2]string{addr, service})
	return nil
}

func runMihiniServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mihini-server", "mihini-server -listen DEVICE_ADDR -map CLIENT_ADDR=SERVICE_HOST:PORT [-map ...] [-stall-timeout DURATION] [-log-level LEVEL]", `
Run the server side of the Mihini agent's TCP Remote Connection (the
original's ServerSideApp): a device dials DEVICE_ADDR and sends LISTEN
(rtcp mihini-device, or the Mihini agent); then each client that connects
to a CLIENT_ADDR is carried over the device's link, and the device
connects to SERVICE_HOST:PORT for it, as the device sees that address. A
device that dials again replaces its old link. Clients that come while no
device is connected are closed. The wire has no flow control: a client
that reads slowly holds the device back, and its link's other clients
wait with it, for at most -stall-timeout if it reads nothing. It runs
until SIGINT or SIGTERM.

Examples:

	rtcp mihini-server -listen :9100 -map 127.0.0.1:2222=127.0.0.1:22
	rtcp mihini-server -listen :9100 -map :8080=192.168.1.10:80 -map :2222=127.0.0.1:22`)
	listen := fs.String("listen", "", "TCP `address` the device dials, e.g. :9100 (required)")
	var maps mapFlag
	fs.Var(&maps, "map", "`CLIENT_ADDR=SERVICE_HOST:PORT`: carry clients of CLIENT_ADDR to SERVICE_HOST:PORT behind the device (repeatable, at least one)")
	stall := stallFlag(fs)
	logger := logFlags(fs, stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "listen"); err != nil {
		return err
	}
	if len(maps.maps) == 0 {
		return usageErrorf(fs, "give at least one -map")
	}
	log := logger()

	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	for _, addr := range append([]string{*listen}, mapAddrs(maps.maps)...) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, l)
	}
	srv := &mihini.Server{StallTimeout: *stall, Logger: log}
	var wg sync.WaitGroup
	failed := make(chan error, len(lns))
	serve := func(f func() error) {
		wg.Go(func() {
			if err := f(); !errors.Is(err, mihini.ErrServerClosed) {
				failed <- err
			}
		})
	}
	serve(func() error { return srv.Serve(lns[0]) })
	var clients []string
	for i, m := range maps.maps {
		l := lns[i+1]
		serve(func() error { return srv.ServeClients(l, m[1]) })
		clients = append(clients, fmt.Sprintf("%s -> %s", l.Addr(), m[1]))
	}
	ready(log, "rtcp mihini-server: listening", "addr", lns[0].Addr().String(), "clients", strings.Join(clients, ", "))

	var err error
	select {
	case err = <-failed:
	case <-ctx.Done():
	}
	srv.Close()
	wg.Wait()
	return err
}

func mapAddrs(maps [][2]string) []string {
	addrs := make([]string, len(maps))
	for i, m := range maps {
		addrs[i] = m[0]
	}
	return addrs
}
