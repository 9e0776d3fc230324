package rtcp

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// A Dialer connects indirect clients. The zero value is ready to use.
type Dialer struct {
	// Name is this client's name, sent to the DP and shown to the server
	// as the RemoteAddr of the session. Optional.
	Name string

	// Dial opens the TCP connection to the DP (or, for a direct client, to
	// the server). Nil means a net.Dialer. Tests inject in-memory pipes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives debug logs. Nil is silent.
	Logger *slog.Logger
}

// DialContext connects to the indirect server name through the DP at addr,
// or, with an empty name, directly to the TCP server at addr. The context
// bounds connecting, not the session.
func (d *Dialer) DialContext(ctx context.Context, addr, name string) (net.Conn, error) {
	if name == "" {
		return dialTCP(ctx, d.Dial, addr)
	}
	raddr := &Addr{Name: name, Addr: addr}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "rtcp", Addr: raddr, Err: err}
	}
	c, err := dialTCP(ctx, d.Dial, addr)
	if err != nil {
		return nil, opErr(err)
	}
	conn, err := d.handshake(ctx, c, addr, name)
	if err != nil {
		c.Close()
		return nil, opErr(err)
	}
	return conn, nil
}

func (d *Dialer) handshake(ctx context.Context, c net.Conn, addr, name string) (*Conn, error) {
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{R: plan5.RoleIC, N: d.Name}
	plan5link.Offer(ours, plan5.DefaultMaxLine)
	r := plan5.NewReader(c, plan5.DefaultMaxLine)
	theirs, err := exchangeAloha(c, r, ours, addr)
	if err != nil {
		stop()
		return nil, ctxErr(ctx, err)
	}
	if err := stop(); err != nil {
		return nil, err
	}
	local := &Addr{Name: d.Name, Addr: c.LocalAddr().String()}
	remote := &Addr{Name: name, Addr: addr}
	cfg := plan5link.Config(ours, theirs)
	cfg.Name = "connection to DP " + addr
	cfg.AcceptBacklog = -1 // a DP opens nothing toward a client
	cfg.StreamAddrs = func(string, string, bool) (net.Addr, net.Addr) { return local, remote }
	sess := mux.New(c, plan5link.NewFramer(r, c), cfg)
	st, err := sess.Open(ctx, name, "")
	if err != nil {
		sess.Close()
		var re *mux.RefusedError
		if errors.As(err, &re) {
			return nil, &RefusedError{Name: name, DP: addr, Reason: re.Reason}
		}
		return nil, ctxErr(ctx, err)
	}
	if d.Logger != nil {
		d.Logger.Debug("rtcp: session open", "server", name, "dp", addr, "x", st.ID())
	}
	return newConn(st, func() { sess.Close() }), nil
}

// exchangeAloha sends ours and reads the DP's answer, which must be a
// compatible Aloha from a DP with no Error.
func exchangeAloha(c net.Conn, r *plan5.Reader, ours *plan5.Aloha, addr string) (*plan5.Aloha, error) {
	if err := plan5link.WriteMessage(c, ours, 0); err != nil {
		return nil, err
	}
	theirs, err := plan5link.ReadAloha(r)
	if err != nil {
		return nil, err
	}
	if theirs.Error != "" {
		return nil, &RefusedError{Name: ours.N, DP: addr, Reason: theirs.Error}
	}
	if theirs.R == plan5.RoleAbortVersion {
		return nil, &RefusedError{Name: ours.N, DP: addr, Reason: "incompatible protocol version (the DP answered AbortVersion)"}
	}
	if err := plan5link.CheckAloha(theirs, plan5.RoleDP); err != nil {
		return nil, err
	}
	return theirs, nil
}

// ctxErr prefers the context's error when the context ended the setup.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
