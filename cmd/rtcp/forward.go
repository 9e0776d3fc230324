package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"rtcp/internal/relay"
	"rtcp/internal/serve"
)

// forward accepts connections on l and joins each, both ways with
// half-close passed on, to a connection that dial opens for it. When ctx
// ends it closes l and every connection still open, and returns nil once
// all their goroutines have ended. It closes l in any case.
func forward(ctx context.Context, l net.Listener, dial func(context.Context) (net.Conn, error), log *slog.Logger) error {
	g := serve.Group{Logger: log}
	ctx, cancel := context.WithCancel(ctx)
	defer g.Close()
	defer cancel() // before g.Close: it ends the joins still running
	stop := context.AfterFunc(ctx, g.CloseListeners)
	defer stop()
	err := g.Serve(l, func(c net.Conn) bool {
		carry(ctx, c, dial, log)
		return false
	})
	if err == serve.ErrClosed {
		return nil
	}
	return err
}

// acker is a session whose client waits for the server's answer
// (rtcp.ListenConfig.ManualAck), so that a refusal can tell it why.
type acker interface {
	Ack(refusal error) error
}

// carry joins c to a new connection from dial until both directions end
// or ctx ends. A session whose client waits for an answer is answered
// once dial has: accepted, or refused with dial's error.
func carry(ctx context.Context, c net.Conn, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	from := c.RemoteAddr().String()
	out, err := dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot connect; refusing the incoming connection", "from", from, "err", err)
		}
		if a, ok := c.(acker); !ok || a.Ack(fmt.Errorf("the server cannot reach its service: %w", err)) != nil {
			c.Close()
		}
		return
	}
	if a, ok := c.(acker); ok {
		if err := a.Ack(nil); err != nil {
			log.Info("the client went away before its session was accepted", "from", from, "err", err)
			c.Close()
			out.Close()
			return
		}
	}
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		out.Close()
	})
	defer stop()
	log.Debug("connection open", "from", from)
	st, err := relay.Join(c, out, nil)
	if err != nil && ctx.Err() == nil {
		log.Info("connection cut", "from", from, "in", st.AtoB, "out", st.BtoA, "err", err)
		return
	}
	log.Debug("connection closed", "from", from, "in", st.AtoB, "out", st.BtoA)
}
