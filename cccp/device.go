package cccp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"rtcp/internal/backoff"
	"rtcp/internal/relay"
	wire "rtcp/protocol/cccp"
)

// A Device is the Thing's side of CCCP: it dials the proxy's device port,
// registers with its serial, and carries the connection to a local TCP
// service; when either ends it connects again, with backoff. The zero
// value needs Proxy, Serial and To.
type Device struct {
	// Proxy is the host:port of the proxy's device port.
	Proxy string

	// Serial is what the device registers as.
	Serial string

	// To is the host:port of the local service that clients reach.
	To string

	// Dial opens TCP connections (to the proxy and to the service). Nil
	// means a net.Dialer. Tests inject in-memory pipes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// MinBackoff and MaxBackoff bound the wait before connecting again
	// (exponential, full jitter). Defaults 1 s and 1 min.
	MinBackoff, MaxBackoff time.Duration

	// Logger receives logs of connections made and lost. Nil is silent.
	Logger *slog.Logger
}

// stableSession is how long a session must last for the next attempt to
// start again from the shortest wait.
const stableSession = 30 * time.Second

// Run keeps the device registered until ctx ends, then returns ctx's
// error. It returns at once if the serial cannot be registered.
func (d *Device) Run(ctx context.Context) error {
	if err := wire.CheckSerial(d.Serial); err != nil {
		return err
	}
	if d.Proxy == "" || d.To == "" {
		return fmt.Errorf("cccp: a Device needs Proxy (the proxy's device port) and To (the local service)")
	}
	minB, maxB := d.MinBackoff, d.MaxBackoff
	if minB <= 0 {
		minB = time.Second
	}
	if maxB <= 0 {
		maxB = time.Minute
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	attempt := 0
	for {
		start := time.Now()
		err := d.Once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) >= stableSession {
			attempt = 1
		} else {
			attempt++
		}
		wait := backoff.Delay(attempt, minB, maxB)
		log.Info("cccp: device connection ended; connecting again", "serial", d.Serial, "err", err, "retry_in", wait)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// Once connects to the local service and the proxy, registers, and
// carries bytes both ways until either side ends, which ends both, or ctx
// ends. It returns the error that ended it, nil for a clean end.
func (d *Device) Once(ctx context.Context) error {
	svc, err := d.dial(ctx, d.To)
	if err != nil {
		return fmt.Errorf("cccp: cannot reach the local service: %w", err)
	}
	pc, err := d.dial(ctx, d.Proxy)
	if err != nil {
		svc.Close()
		return fmt.Errorf("cccp: cannot reach the proxy: %w", err)
	}
	if err := wire.WriteSerial(pc, d.Serial); err != nil {
		svc.Close()
		pc.Close()
		return fmt.Errorf("cccp: cannot register with the proxy: %w", err)
	}
	if d.Logger != nil {
		d.Logger.Info("cccp: device registered", "serial", d.Serial, "proxy", d.Proxy, "service", d.To)
	}
	stop := context.AfterFunc(ctx, func() {
		svc.Close()
		pc.Close()
	})
	defer stop()
	_, err = relay.Join(relay.FullClose(pc), relay.FullClose(svc), nil)
	if relay.Cut(err) && ctx.Err() == nil && d.Logger != nil {
		d.Logger.Warn("cccp: session cut", "serial", d.Serial, "service", d.To, "reason", err)
	}
	return err
}

func (d *Device) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.Dial != nil {
		return d.Dial(ctx, "tcp", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}
