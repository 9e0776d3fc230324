package tcpipe

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"rtcp/internal/backoff"
)

// A Client is a tcpipe instance in client mode (tcpipe -c HOST:PORT): it
// dials the server instance and, whenever the link drops or cannot be
// made, dials again, for ever. Otherwise it behaves as a Server does:
// user applications that connect to its Ports reach the server's target
// on the same port, and the server's user connections reach Target.
//
// Set its fields and call DialAndServe once.
type Client struct {
	// Server is the host:port of the server instance. Required.
	Server string

	// Ports, Bind, Target, TargetPorts, DialTarget, Quiet,
	// FirstDataHold, MaxBuffer, StallTimeout and Logger are as in Server.
	Ports         []uint16
	Bind          string
	Target        string
	TargetPorts   []uint16
	DialTarget    func(ctx context.Context, network, address string) (net.Conn, error)
	Quiet         time.Duration
	FirstDataHold time.Duration
	MaxBuffer     int
	StallTimeout  time.Duration
	Logger        *slog.Logger

	// Secret and HandshakeTimeout are as in Server: with a secret, the
	// client proves it holds it, and takes the link only once the server
	// has proved it back.
	Secret           []byte
	HandshakeTimeout time.Duration

	// Dial dials the server instance. Nil means a net.Dialer with a 10 s
	// timeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// MinBackoff and MaxBackoff bound the jittered, exponential wait
	// before dialling the server again. Defaults 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	in instance
}

// DialAndServe accepts user applications on Ports, dials the server
// instance and carries connections over the link, dialling again whenever
// it drops. It returns ctx's error once ctx has ended and every
// connection is closed, or at once if a port cannot be listened on.
func (c *Client) DialAndServe(ctx context.Context) error {
	if c.Server == "" {
		return errors.New("tcpipe: Client.Server is empty; set the host:port of the server instance")
	}
	in := &c.in
	in.setup(settings{ports: c.Ports, bind: c.Bind, target: c.Target, targetPorts: c.TargetPorts,
		dialTarget: c.DialTarget, quiet: c.Quiet, firstDataHold: c.FirstDataHold, maxBuffer: c.MaxBuffer,
		stallTimeout: c.StallTimeout, secret: c.Secret, handshake: c.HandshakeTimeout, log: c.Logger})
	if err := checkSecret(c.Secret); err != nil {
		return err
	}
	defer in.close()
	stop := context.AfterFunc(ctx, in.cancel) // the links' ends are the shutdown's
	defer stop()
	if err := in.listenUsers(); err != nil {
		return err
	}
	minB, maxB := c.MinBackoff, c.MaxBackoff
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	failures := 0
	for {
		conn, err := c.dial(ctx)
		if err == nil {
			if in.g.Track(conn) {
				err = c.serve(ctx, conn, &failures)
				in.g.Release(conn)
			}
			conn.Close()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		wait := backoff.Delay(failures, minB, maxB)
		in.log.Warn("tcpipe: no link to the server instance; dialling again", "server", c.Server, "err", err, "retry_in", wait)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// serve runs the handshake, if there is a secret, and carries the link
// conn until it ends. A link that came up resets failures.
func (c *Client) serve(ctx context.Context, conn net.Conn, failures *int) error {
	in := &c.in
	keepAlive(conn)
	br := bufio.NewReader(conn)
	if in.secret != nil {
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err := clientHandshake(conn, br, in.secret, in.handshake)
		stop()
		if err != nil {
			return err
		}
	}
	*failures = 0
	return in.serveLink(conn, br, ctx.Done())
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx, "tcp", c.Server)
	}
	d := net.Dialer{Timeout: dialTimeout}
	return d.DialContext(ctx, "tcp", c.Server)
}
