package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"rtcp/internal/relay"
)

// Bounds of the wait before Accept is tried again after a temporary error:
// it starts at minAcceptDelay and doubles up to maxAcceptDelay, as in
// net/http.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// forward accepts connections on l and joins each, both ways with
// half-close passed on (as rtcp.Join does), to a connection that dial
// opens for it. When ctx ends it closes l and ends every connection still
// open: a session that the relay loop took (two TCP connections, on
// Linux) is cut, its peers reset, as bytes in flight are lost; any other
// is closed, which its peers read as a clean end. It returns nil once all
// their goroutines have ended. It closes l in any case. Accept errors that
// may pass (too many open files, a connection aborted before it was
// accepted) are retried after a wait.
func forward(ctx context.Context, l net.Listener, dial func(context.Context) (net.Conn, error), log *slog.Logger) error {
	return forwardConns(ctx, l, func(ctx context.Context, _ net.Conn) (net.Conn, error) { return dial(ctx) }, log)
}

// forwardConns is forward with a dial that is told the connection it
// opens for (expose -proxy-protocol writes its client's address).
func forwardConns(ctx context.Context, l net.Listener, dial func(context.Context, net.Conn) (net.Conn, error), log *slog.Logger) error {
	// Pairs of TCP connections (a session of the tcp transport, or a
	// raw leg, and the service's connection) go on one relay loop for
	// all (relay.Loop), which ends with the last of them.
	var loop relay.Loop
	defer loop.Close()
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
			delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
			log.Warn("accept failed; retrying", "addr", l.Addr(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		wg.Go(func() { carry(ctx, &loop, c, dial, log) })
	}
}

// temporary reports whether an Accept error may pass by itself, so that
// accepting again later can succeed.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// acker is a session whose client waits for the server's answer
// (rtcp.ListenConfig.ManualAck), so that a refusal can tell it why.
type acker interface {
	Ack(refusal error) error
}

// carry joins c to a new connection from dial, on loop where both are TCP
// connections, until both directions end or ctx ends (which cuts a
// session in the loop, and closes the connections of any other), and
// closes c in any case. A session whose client waits for an answer is
// answered once dial has: accepted, or refused with dial's error.
func carry(ctx context.Context, loop *relay.Loop, c net.Conn, dial func(context.Context, net.Conn) (net.Conn, error), log *slog.Logger) {
	stopC := context.AfterFunc(ctx, func() { c.Close() })
	defer stopC()
	from := c.RemoteAddr().String()
	out, err := dial(ctx, c)
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
	stopOut := context.AfterFunc(ctx, func() { out.Close() })
	defer stopOut()
	log.Debug("connection open", "from", from)
	var st relay.Stats
	if relay.Loopable(c, out) {
		st, err = loop.JoinContext(ctx, c, out, nil)
	} else {
		// Not through the loop: its frame would sit under the idle
		// wait of every stream's session (relay.Loopable).
		st, err = relay.Join(c, out, nil)
	}
	in, back := st.AtoB, st.BtoA
	if err != nil && ctx.Err() == nil {
		src, dst := c, out // the direction that failed, as rtcp.Join says it
		if !st.FailedAtoB {
			src, dst = out, c
		}
		err = fmt.Errorf("relaying from %v to %v: %w", src.RemoteAddr(), dst.RemoteAddr(), err)
		log.Info("connection cut", "from", from, "in", in, "out", back, "err", err)
		return
	}
	log.Debug("connection closed", "from", from, "in", in, "out", back)
}
