package mihini

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"rtcp/internal/backoff"
	"rtcp/internal/mux"
	"rtcp/internal/relay"
	wire "rtcp/protocol/mihini"
)

// A Device is the device side of the TCP Remote Connection (the original's
// DeviceSideApp). It dials the server side, sends LISTEN, and for each
// CONNECT dials the address it names and carries the session's DATA and
// CLOSE both ways. DATA the server sends before the CONNECT it belongs to
// is held (up to EarlyData bytes) and delivered once the service is
// dialled. When the link drops, every session on it is cut off.
//
// Set Server and call DialAndServe.
type Device struct {
	// Server is the host:port of the server side (the original's
	// ServerAddress:ServerPort). Required by DialAndServe.
	Server string

	// Reconnect makes DialAndServe dial the server again when the link
	// cannot be made or drops, with jittered exponential backoff between
	// MinBackoff (default 1 s) and MaxBackoff (default 1 min). The
	// original does not reconnect.
	Reconnect              bool
	MinBackoff, MaxBackoff time.Duration

	// Dial dials the server. Nil means a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// DialService dials the host:port of a CONNECT. Nil means a
	// net.Dialer with a 10 s timeout. Set it to limit what the server may
	// reach through the device.
	DialService func(ctx context.Context, network, address string) (net.Conn, error)

	// EarlyData bounds the DATA held per client before its CONNECT;
	// a client that sends more is refused with CLOSE. Default 256 KiB,
	// and never less than one full frame (65535 bytes).
	EarlyData int

	// CloseGrace, MaxBuffer and StallTimeout are as in Server.
	CloseGrace   time.Duration
	MaxBuffer    int
	StallTimeout time.Duration

	// Logger receives the device's logs. Nil is silent.
	Logger *slog.Logger
}

const (
	defaultEarlyData  = 256 << 10
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
	dialTimeout       = 10 * time.Second
)

// DialAndServe dials Server, sends LISTEN, and serves the link until it
// drops or ctx ends; with Reconnect it then dials again, until ctx ends.
// It returns ctx's error once ctx has ended and every session is closed,
// or, without Reconnect, the error that ended the link.
func (d *Device) DialAndServe(ctx context.Context) error {
	if d.Server == "" {
		return errors.New("mihini: Device.Server is empty; set the host:port of the server side")
	}
	log := orDiscard(d.Logger)
	failures := 0
	for {
		c, err := d.dial(ctx)
		if err == nil {
			failures = 0
			log.Info("mihini: link to server up", "server", d.Server)
			err = d.ServeConn(ctx, c)
		} else {
			err = fmt.Errorf("mihini: cannot reach server %s: %w", d.Server, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.Reconnect {
			return err
		}
		failures++
		wait := backoff.Delay(failures, orDefault(d.MinBackoff, defaultMinBackoff), orDefault(d.MaxBackoff, defaultMaxBackoff))
		log.Warn("mihini: link to server down; dialling again", "server", d.Server, "err", err, "retry_in", wait)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// orDefault returns v, or def if v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (d *Device) dial(ctx context.Context) (net.Conn, error) {
	if d.Dial != nil {
		return d.Dial(ctx, "tcp", d.Server)
	}
	dl := net.Dialer{Timeout: dialTimeout}
	return dl.DialContext(ctx, "tcp", d.Server)
}

// ServeConn serves one link the device has already dialled: it sends
// LISTEN and carries sessions until the link drops or ctx ends, then
// closes c and returns why the link ended.
func (d *Device) ServeConn(ctx context.Context, c net.Conn) error {
	log := orDiscard(d.Logger)
	early := max(orDefault(d.EarlyData, defaultEarlyData), wire.MaxPayload)
	listen, _ := wire.AppendFrame(nil, wire.Frame{Command: wire.Listen})
	c.SetWriteDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write(listen); err != nil {
		c.Close()
		return fmt.Errorf("mihini: cannot send LISTEN to server %s: %w", c.RemoteAddr(), err)
	}
	c.SetWriteDeadline(time.Time{})
	cfg := linkConfig{closeGrace: d.CloseGrace, maxBuffer: d.MaxBuffer, stallTimeout: d.StallTimeout, earlyMax: early, log: log}
	fr := newFramer(true, wire.NewReader(c), c, cfg.grace(), early, log)
	s := mux.New(c, fr, cfg.muxConfig("Mihini link to server "+c.RemoteAddr().String()))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.Close()
		wg.Wait()
	}()
	for {
		select {
		case st := <-s.Streams():
			wg.Go(func() { d.serveSession(ctx, st, log) })
		case <-s.Done():
			return s.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// serveSession dials what a CONNECT names and relays the session to it. A
// session whose address cannot be dialled is closed: the server reads
// CLOSE.
func (d *Device) serveSession(ctx context.Context, st *mux.Stream, log *slog.Logger) {
	log = log.With("client", st.ID(), "service", st.Addr())
	if st.Addr() == "" {
		st.Close() // a CONNECT that could not be parsed; the framer logged it
		return
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	var c net.Conn
	var err error
	if d.DialService != nil {
		c, err = d.DialService(dctx, "tcp", st.Addr())
	} else {
		var dl net.Dialer
		c, err = dl.DialContext(dctx, "tcp", st.Addr())
	}
	cancel()
	if err != nil {
		log.Info("mihini: cannot connect to the service; answering CLOSE", "err", err)
		st.Close()
		return
	}
	log.Debug("mihini: session open")
	_, err = relay.Join(relay.FullClose(c), st, nil)
	logEnd(log, err, ctx.Err() != nil)
}
