package tcpipe

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
	"rtcp/internal/serve"
)

// userPort is one of the ports where user applications connect. The
// instance's mu guards it.
type userPort struct {
	busy    bool          // a user connection holds the port: open, or waiting to open
	waiting bool          // a new user connection waits for busy to end
	freed   chan struct{} // if not nil, closed when busy ends
	conn    *userConn     // the connection whose Connect went out, until it ends

	// drain, while not nil, is closed when the partner is done with the
	// port's last connection: it sent its Disconnect for it (SPEC.md,
	// "Stale Data"). It is only waited for on drainLink, until drainUntil.
	drain      chan struct{}
	drainLink  *mux.Session
	drainUntil time.Time
}

// userConn is an accepted connection, as the partner answers it.
type userConn struct {
	link  *mux.Session
	heard chan struct{} // closed when the partner first speaks of it
	spoke bool          // heard is closed
	data  bool          // the partner sent Data for it
	ended bool          // the partner sent Disconnect for it
}

// partnerSaid is the framer telling, on link, of the partner's first Data
// for the connection this instance accepted on port since its Connect
// (end false), or of a Disconnect for it (end true). The caller holds mu.
func (in *instance) partnerSaid(link *mux.Session, port uint16, end bool) {
	up := in.users[port]
	if up == nil {
		return
	}
	if c := up.conn; c != nil && c.link == link {
		c.ended = c.ended || end
		c.data = c.data || !end
		if !c.spoke {
			c.spoke = true
			close(c.heard)
		}
		return
	}
	if end && up.drain != nil && up.drainLink == link {
		close(up.drain)
		up.drain = nil
	}
}

// acceptUsers accepts user applications on port. A connection that comes
// while the port carries one already, or while there is no partner, is
// closed at once (SPEC.md, "One connection per port").
func (in *instance) acceptUsers(l net.Listener, port uint16) {
	err := in.g.Serve(l, func(c net.Conn) bool {
		if why := in.claim(port); why != "" {
			in.log.Info("tcpipe: user application refused", "port", port, "remote", c.RemoteAddr(), "reason", why)
			return false
		}
		in.serveUser(c, port)
		return false
	})
	if err != serve.ErrClosed {
		in.log.Error("tcpipe: stopped accepting user applications", "addr", l.Addr(), "err", err)
	}
}

// claim takes port for a new accepted connection, or says why it cannot
// be carried. If the port's connection is still open, claim waits for it
// to end, for at most Quiet: it may be ending, its user having closed it
// and connected again before this instance noticed. One new connection
// waits at a time; another is refused at once.
func (in *instance) claim(port uint16) (why string) {
	const oneAtATime = "the port already carries a connection (one at a time)"
	in.mu.Lock()
	defer in.mu.Unlock()
	up := in.users[port]
	switch {
	case in.partner == nil:
		return "no partner instance is connected"
	case up.busy && up.waiting:
		return oneAtATime
	case up.busy:
		up.waiting = true
		if up.freed == nil {
			up.freed = make(chan struct{})
		}
		freed := up.freed
		in.mu.Unlock()
		wait := in.quiet
		if in.busyWait > 0 {
			wait = in.busyWait
		}
		t := time.NewTimer(wait)
		select {
		case <-freed:
		case <-t.C:
		case <-in.g.Done():
		}
		t.Stop()
		in.mu.Lock()
		up.waiting = false
		if up.busy {
			return oneAtATime
		}
	}
	up.busy = true
	return ""
}

// serveUser carries an accepted connection to the partner, which connects
// to its target on the same port. It first waits, if need be, for the
// partner to be done with the port's last connection, so that none of
// the old connection's Data reaches the new one (SPEC.md, "Stale Data").
func (in *instance) serveUser(c net.Conn, port uint16) {
	up := in.users[port]
	defer in.release(port)
	if !in.waitDrain(up, port, c) {
		return
	}
	in.mu.Lock()
	s := in.partner
	if s == nil {
		in.mu.Unlock()
		in.log.Info("tcpipe: user application refused", "port", port, "remote", c.RemoteAddr(), "reason", "the partner link was lost")
		return
	}
	uc := &userConn{link: s, heard: make(chan struct{})}
	up.conn = uc
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		defer in.mu.Unlock()
		up.conn = nil
		if !uc.ended {
			// Our Disconnect went out, and the partner may have sent
			// Data for the connection before it read it.
			up.drain, up.drainLink, up.drainUntil = make(chan struct{}), s, time.Now().Add(in.quiet)
		}
	}()

	st, err := s.Open(context.Background(), "", strconv.Itoa(int(port)))
	if err != nil {
		in.log.Info("tcpipe: user application refused", "port", port, "remote", c.RemoteAddr(), "err", err)
		return
	}
	in.log.Debug("tcpipe: carrying a user application", "port", port, "remote", c.RemoteAddr())
	var conn net.Conn = st
	if in.secret == nil && in.firstDataHold > 0 {
		// The partner may be an original, which exits on Data for a
		// connection it could not make (SPEC.md, "First Data").
		conn = &holdFirst{Stream: st, heard: uc.heard, hold: in.firstDataHold, refused: func() bool {
			in.mu.Lock()
			defer in.mu.Unlock()
			return uc.ended
		}, stop: in.g.Done()}
	}
	_, err = relay.Join(relay.FullClose(c), conn, nil)
	in.mu.Lock()
	ended, data := uc.ended, uc.data
	in.mu.Unlock()
	if ended && !data && err == nil {
		in.log.Info("tcpipe: the partner ended a user application's connection before any data (its target refused it, or closed at once)",
			"port", port, "remote", c.RemoteAddr())
		return
	}
	in.logEnd(err, "port", port, "remote", c.RemoteAddr())
}

// waitDrain holds a new user connection on up while the partner may still
// send Data for the port's last connection: until its Disconnect for it
// comes, its link is lost, or the quiet period has passed. It reports
// false if the instance closed meanwhile.
func (in *instance) waitDrain(up *userPort, port uint16, c net.Conn) bool {
	in.mu.Lock()
	drain, link, until := up.drain, up.drainLink, up.drainUntil
	if drain != nil && (link != in.partner || !time.Now().Before(until)) {
		drain, up.drain = nil, nil
	}
	in.mu.Unlock()
	if drain == nil {
		return true
	}
	in.log.Debug("tcpipe: holding a user application until the partner is done with the port's last connection",
		"port", port, "remote", c.RemoteAddr(), "at_most", time.Until(until))
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-drain:
	case <-t.C:
	case <-link.Done():
	case <-in.g.Done():
		return false
	}
	in.mu.Lock()
	if up.drain == drain {
		up.drain = nil
	}
	in.mu.Unlock()
	return true
}

// release frees port for the next user connection.
func (in *instance) release(port uint16) {
	in.mu.Lock()
	up := in.users[port]
	up.busy = false
	if up.freed != nil {
		close(up.freed)
		up.freed = nil
	}
	in.mu.Unlock()
	if in.released != nil {
		in.released(port)
	}
}

// holdFirst is the stream of an accepted connection whose first write
// waits until the partner speaks of the connection (its first Data, or
// its Disconnect if its target refused), for at most hold. An original
// partner exits on Data for a connection it could not make, and it
// answers nothing when it could (SPEC.md, "First Data").
type holdFirst struct {
	*mux.Stream
	heard   <-chan struct{}
	hold    time.Duration
	refused func() bool
	stop    <-chan struct{}
	held    atomic.Bool
}

func (h *holdFirst) Write(p []byte) (int, error) {
	if !h.held.Load() {
		t := time.NewTimer(h.hold)
		select {
		case <-h.heard:
		case <-t.C:
		case <-h.Session().Done():
		case <-h.stop:
		}
		t.Stop()
		h.held.Store(true)
		if h.refused() {
			// The partner refused the connection: its first bytes have
			// nowhere to go, and the connection ends quietly.
			return 0, &net.OpError{Op: "write", Net: "rtcp", Source: h.LocalAddr(), Addr: h.RemoteAddr(), Err: net.ErrClosed}
		}
	}
	return h.Stream.Write(p)
}
