package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"rtcp"
	"rtcp/mihini"
)

// mihiniFlag is dp's repeatable -mihini NAME=ADDR=SERVICE: Mihini devices
// dial ADDR, and each becomes the server NAME, whose sessions the device
// carries to SERVICE.
type mihiniFlag struct{ doors []mihiniDoor }

type mihiniDoor struct{ name, addr, service string }

func (f *mihiniFlag) String() string {
	s := make([]string, len(f.doors))
	for i, d := range f.doors {
		s[i] = d.name + "=" + d.addr + "=" + d.service
	}
	return strings.Join(s, ",")
}

func (f *mihiniFlag) Set(v string) error {
	parts := strings.SplitN(v, "=", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return errors.New("want NAME=ADDR=SERVICE_HOST:PORT, e.g. plc-7=:9100=127.0.0.1:502")
	}
	if err := validName(parts[0], true); err != nil {
		return fmt.Errorf("NAME %w", err)
	}
	if err := checkService(parts[2]); err != nil {
		return err
	}
	for _, d := range f.doors {
		if d.addr == parts[1] {
			return fmt.Errorf("address %s is already given to %q", d.addr, d.name)
		}
	}
	f.doors = append(f.doors, mihiniDoor{parts[0], parts[1], parts[2]})
	return nil
}

// checkService checks a HOST:PORT that a Mihini device is to dial.
func checkService(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err == nil && host == "" {
		err = errors.New("no host")
	}
	if n, perr := strconv.Atoi(port); err == nil && (perr != nil || n < 1 || n > 65535) {
		err = errors.New("the port is not a number from 1 to 65535")
	}
	if err != nil {
		return fmt.Errorf("service %q: %v; want HOST:PORT as the device dials it, e.g. 127.0.0.1:502", s, err)
	}
	return nil
}

// startMihini listens on the address of each door, as a door of budget,
// and serves it beside dp, with the stall timeout stall. It returns a
// function that closes the doors and waits for them.
func startMihini(dp *rtcp.DiscoverPoint, doors []mihiniDoor, key string, budget *dpDoors, stall time.Duration, log *slog.Logger) (stop func(), err error) {
	var lns []net.Listener
	for _, d := range doors {
		l, err := budget.listen("mihini "+d.name, d.addr, 0)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("-mihini %s=%s: %w", d.name, d.addr, err)
		}
		lns = append(lns, l)
	}
	var wg sync.WaitGroup
	var opened []*mihini.Door
	for i, d := range doors {
		door := &mihini.Door{DP: dp, Name: d.name, Service: d.service, Key: key, StallTimeout: stall, Logger: log}
		opened = append(opened, door)
		l := lns[i]
		ready(log, "rtcp dp: Mihini devices become a server", "addr", l.Addr().String(), "name", d.name, "service", d.service)
		wg.Go(func() {
			if err := door.Serve(l); !errors.Is(err, mihini.ErrServerClosed) {
				log.Error("rtcp dp: Mihini door stopped", "name", d.name, "err", err)
			}
		})
	}
	return func() {
		for _, d := range opened {
			d.Close()
		}
		wg.Wait()
	}, nil
}
