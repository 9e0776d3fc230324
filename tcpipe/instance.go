package tcpipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
)

// Errors of the tcpipe roles.
var (
	// ErrServerClosed is returned by Server.Serve after Close.
	ErrServerClosed = errors.New("tcpipe: server closed")
)

const (
	defaultQuiet = 200 * time.Millisecond
	dialTimeout  = 10 * time.Second
)

var discard = slog.New(slog.DiscardHandler)

// instance is what the two roles share: the ports where user applications
// connect, the target the partner's connections go to, and the partner
// link of the moment.
type instance struct {
	ports      []uint16
	bind       string
	target     string
	dialTarget func(ctx context.Context, network, address string) (net.Conn, error)
	quiet      time.Duration
	maxBuffer  int
	log        *slog.Logger

	// ready, if set, is called when a partner link takes connections,
	// and released when a port accepts again: hooks for tests (the wire
	// has no handshake to wait for).
	ready    func()
	released func(port uint16)

	mu       sync.Mutex
	partner  *mux.Session
	busy     map[uint16]bool // ports whose accepted connection is open or quiet
	listened bool
	lns      map[net.Listener]struct{}
	conns    map[net.Conn]struct{}
	closed   bool
	done     chan struct{}
	ctx      context.Context // canceled by close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (in *instance) setup(ports []uint16, bind, target string,
	dialTarget func(context.Context, string, string) (net.Conn, error),
	quiet time.Duration, maxBuffer int, log *slog.Logger) {
	in.ports, in.bind, in.target, in.dialTarget = ports, bind, target, dialTarget
	in.quiet, in.maxBuffer = quiet, maxBuffer
	if in.quiet <= 0 {
		in.quiet = defaultQuiet
	}
	in.log = log
	if in.log == nil {
		in.log = discard
	}
	in.busy = make(map[uint16]bool)
	in.lns = make(map[net.Listener]struct{})
	in.conns = make(map[net.Conn]struct{})
	in.done = make(chan struct{})
	in.ctx, in.cancel = context.WithCancel(context.Background())
}

// listenUsers listens on every port, once, and accepts user applications
// on each until the instance is closed. If a port cannot be listened on,
// it closes the others and returns why.
func (in *instance) listenUsers() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.listened {
		return nil
	}
	if in.closed {
		return ErrServerClosed
	}
	seen := make(map[uint16]bool)
	var lns []net.Listener
	fail := func(err error) error {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	for _, p := range in.ports {
		if p == 0 || seen[p] {
			return fail(fmt.Errorf("tcpipe: port %d given twice or zero; list each port once, 1 to 65535", p))
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort(in.bind, strconv.Itoa(int(p))))
		if err != nil {
			return fail(fmt.Errorf("tcpipe: cannot accept user applications on port %d: %w", p, err))
		}
		lns = append(lns, l)
	}
	in.listened = true
	for i, l := range lns {
		in.lns[l] = struct{}{}
		port := in.ports[i]
		in.log.Info("tcpipe: accepting user applications", "addr", l.Addr())
		in.wg.Go(func() { in.acceptUsers(l, port) })
	}
	return nil
}

// acceptUsers accepts user applications on port. A connection that comes
// while the port carries one already, or while there is no partner, is
// closed at once (SPEC.md, "One connection per port").
func (in *instance) acceptUsers(l net.Listener, port uint16) {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if in.isClosed() {
				return
			}
			if temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-in.done:
					t.Stop()
				}
				continue
			}
			in.log.Error("tcpipe: stopped accepting user applications", "addr", l.Addr(), "err", err)
			return
		}
		delay = 0
		s, why := in.claim(port)
		if s == nil {
			in.log.Info("tcpipe: user application refused", "port", port, "remote", c.RemoteAddr(), "reason", why)
			c.Close()
			continue
		}
		if !in.track(c, true) {
			c.Close()
			return
		}
		in.wg.Go(func() {
			defer in.track(c, false)
			in.serveUser(c, port, s)
		})
	}
}

// claim takes port for a new accepted connection and returns the partner
// link to carry it, or nil and the reason it cannot be carried.
func (in *instance) claim(port uint16) (*mux.Session, string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.partner == nil:
		return nil, "no partner instance is connected"
	case in.busy[port]:
		return nil, "the port already carries a connection (one at a time)"
	}
	in.busy[port] = true
	return in.partner, ""
}

// serveUser carries an accepted connection to the partner, which connects
// to its target on the same port; then, after the quiet period, the port
// accepts again.
func (in *instance) serveUser(c net.Conn, port uint16, s *mux.Session) {
	defer in.release(port)
	st, err := s.Open(context.Background(), "", strconv.Itoa(int(port)))
	if err != nil {
		in.log.Info("tcpipe: user application refused", "port", port, "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	in.log.Debug("tcpipe: carrying a user application", "port", port, "remote", c.RemoteAddr())
	relay.Join(relay.FullClose(c), st, nil)
}

// release frees port after the quiet period, during which Data the
// partner sent for the old connection drains (SPEC.md, "Stale Data").
func (in *instance) release(port uint16) {
	t := time.NewTimer(in.quiet)
	select {
	case <-t.C:
	case <-in.done:
		t.Stop()
	}
	in.mu.Lock()
	delete(in.busy, port)
	in.mu.Unlock()
	if in.released != nil {
		in.released(port)
	}
}

// serveLink carries connections over the partner link c until it ends,
// the instance closes or stop is closed. The link replaces the one before
// it: the wire has no keepalive, so the old one may be dead unnoticed.
func (in *instance) serveLink(c net.Conn, stop <-chan struct{}) error {
	backlog := 0 // the session's default
	if in.target == "" {
		backlog = -1 // no target: every Connect is answered with Disconnect
	}
	s := mux.New(c, newFramer(c, c), mux.Config{
		Name:            "tcpipe partner link with " + c.RemoteAddr().String(),
		OpenerAssignsID: true,
		NextID:          portID,
		AcceptBacklog:   backlog,
		MaxBuffer:       in.maxBuffer,
	})
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		s.Close()
		return ErrServerClosed
	}
	old := in.partner
	in.partner = s
	in.mu.Unlock()
	if old != nil {
		in.log.Info("tcpipe: a new partner link replaces the old one")
		in.wg.Go(func() { old.Close() }) // it may linger; the new link need not wait
	}
	in.log.Info("tcpipe: partner link up", "remote", c.RemoteAddr())
	if in.ready != nil {
		in.ready()
	}
	var err error
loop:
	for {
		select {
		case st := <-s.Streams():
			in.wg.Go(func() { in.serveTarget(st) })
		case <-s.Done():
			err = s.Err()
			break loop
		case <-in.done:
			err = ErrServerClosed
			break loop
		case <-stop:
			err = ErrServerClosed
			break loop
		}
	}
	in.mu.Lock()
	if in.partner == s {
		in.partner = nil
	}
	in.mu.Unlock()
	s.Close()
	in.log.Info("tcpipe: partner link down; its user connections are closed", "remote", c.RemoteAddr(), "err", err)
	return err
}

// serveTarget connects to the target on the port of the partner's
// connection and carries it; if the target refuses, the partner gets
// Disconnect.
func (in *instance) serveTarget(st *mux.Stream) {
	port := st.ID() - peerBase
	addr := net.JoinHostPort(in.target, strconv.FormatInt(port, 10))
	ctx, cancel := context.WithTimeout(in.ctx, dialTimeout)
	var c net.Conn
	var err error
	if in.dialTarget != nil {
		c, err = in.dialTarget(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		in.log.Info("tcpipe: cannot connect to the target; answering Disconnect", "target", addr, "err", err)
		st.Close()
		return
	}
	if !in.track(c, true) {
		c.Close()
		st.Close()
		return
	}
	defer in.track(c, false)
	in.log.Debug("tcpipe: carrying the partner's connection", "target", addr)
	relay.Join(relay.FullClose(c), st, nil)
}

func (in *instance) isClosed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closed
}

func (in *instance) track(c net.Conn, add bool) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if add {
		if in.closed {
			return false
		}
		in.conns[c] = struct{}{}
	} else {
		delete(in.conns, c)
	}
	return true
}

// close stops accepting, closes the partner link and every connection,
// and waits for the instance's goroutines.
func (in *instance) close() {
	in.mu.Lock()
	if !in.closed {
		in.closed = true
		close(in.done)
		in.cancel()
	}
	for l := range in.lns {
		l.Close()
	}
	for c := range in.conns {
		reset(c)
	}
	partner := in.partner
	in.mu.Unlock()
	if partner != nil {
		partner.Close()
	}
	in.wg.Wait()
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// reset closes c so that its peer sees an error, not a clean end: the
// connection was cut off, it did not finish.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
