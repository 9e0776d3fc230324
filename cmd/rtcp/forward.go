package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"rtcp/internal/relay"
)

// forward accepts connections on l and joins each, both ways with
// half-close passed on, to a connection that dial opens for it. When ctx
// ends it closes l and every connection still open, and returns nil once
// all their goroutines have ended. It closes l in any case.
func forward(ctx context.Context, l net.Listener, dial func(context.Context) (net.Conn, error), log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before wg.Wait: it ends the joins still running
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !temporary(err) {
				return err
			}
			// Out of file descriptors and the like: wait, as
			// net/http's Server does, instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		wg.Go(func() { carry(ctx, c, dial, log) })
	}
}

// carry joins c to a new connection from dial until both directions end
// or ctx ends.
func carry(ctx context.Context, c net.Conn, dial func(context.Context) (net.Conn, error), log *slog.Logger) {
	from := c.RemoteAddr().String()
	out, err := dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot connect; closing the incoming connection", "from", from, "err", err)
		}
		c.Close()
		return
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

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}
