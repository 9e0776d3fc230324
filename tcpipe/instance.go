package tcpipe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
	"rtcp/internal/serve"
)

// Errors of the tcpipe roles.
var (
	// ErrServerClosed is returned by Server.Serve after Close.
	ErrServerClosed = errors.New("tcpipe: server closed")
)

const (
	defaultQuiet         = 200 * time.Millisecond
	defaultFirstDataHold = 100 * time.Millisecond
	dialTimeout          = 10 * time.Second
)

var discard = slog.New(slog.DiscardHandler)

// settings are the fields of a Server or a Client that the instance
// runs with.
type settings struct {
	server        bool
	ports         []uint16
	bind          string
	target        string
	targetPorts   []uint16
	dialTarget    func(ctx context.Context, network, address string) (net.Conn, error)
	quiet         time.Duration
	firstDataHold time.Duration
	maxBuffer     int
	stallTimeout  time.Duration
	secret        []byte
	handshake     time.Duration // timeout
	log           *slog.Logger
}

// instance is what the two roles share: the ports where user applications
// connect, the target the partner's connections go to, and the partner
// link of the moment.
type instance struct {
	settings

	// ready, if set, is called when a partner link takes connections,
	// and released when a port's connection has ended; listen, if set,
	// listens on the ports instead of net.Listen; busyWait, if set,
	// replaces quiet as the bound of claim's wait for a port's last
	// connection to end: hooks for tests.
	ready    func()
	released func(port uint16)
	listen   func(network, address string) (net.Listener, error)
	busyWait time.Duration

	allowed    func(port uint16) bool // the ports of target the partner may reach
	g          serve.Group            // listeners, connections, goroutines
	mu         sync.Mutex
	partner    *mux.Session
	handshakes int                  // partner links in their handshake
	users      map[uint16]*userPort // by port; the map is set once, by listenUsers
	listened   bool
	ctx        context.Context // canceled by close, and when a Client's context ends
	cancel     context.CancelFunc
}

func (in *instance) setup(s settings) {
	in.settings = s
	if in.quiet <= 0 {
		in.quiet = defaultQuiet
	}
	if in.firstDataHold == 0 {
		in.firstDataHold = defaultFirstDataHold
	}
	if in.handshake <= 0 {
		in.handshake = defaultHandshakeTimeout
	}
	if in.log == nil {
		in.log = discard
	}
	in.g.Logger = in.log
	in.g.Reset = true // a cut connection did not finish: its peer sees an error
	in.ctx, in.cancel = context.WithCancel(context.Background())
	in.allowed = allowedPorts(s.targetPorts, s.ports)
}

// allowedPorts is the rule of the ports of the target that the partner's
// Connects may reach: targetPorts, else ports, else any (SPEC.md,
// "Connect").
func allowedPorts(targetPorts, ports []uint16) func(uint16) bool {
	list := targetPorts
	if len(list) == 0 {
		list = ports
	}
	if len(list) == 0 {
		return func(uint16) bool { return true }
	}
	var set [65536 / 64]uint64
	for _, p := range list {
		set[p/64] |= 1 << (p % 64)
	}
	return func(p uint16) bool { return set[p/64]&(1<<(p%64)) != 0 }
}

// warnOpenTarget says, at start, that a partner may reach any port of the
// target: the partner is whoever connects first, unless a secret is set.
func (in *instance) warnOpenTarget() {
	if in.target != "" && len(in.targetPorts) == 0 && len(in.ports) == 0 {
		in.log.Warn("tcpipe: the partner may have this instance connect to any port of the target; list the ports it needs in TargetPorts (rtcp tcpipe -target-ports)",
			"target", in.target)
	}
}

// logEnd logs how a connection that relay.Join carried ended: a cut (a
// lost link, a reset, a stalled reader) at Warn with its reason, unless
// the instance is closing; a clean end at Debug.
func (in *instance) logEnd(err error, args ...any) {
	switch {
	case !relay.Cut(err):
		in.log.Debug("tcpipe: connection closed", args...)
	case in.ctx.Err() != nil:
		in.log.Info("tcpipe: connection cut by the shutdown", append(args, "reason", err)...)
	case errors.As(err, new(*mux.CutError)):
		// The session layer cut it and logged why at Warn, as it did.
		in.log.Info("tcpipe: connection cut", append(args, "reason", err)...)
	default:
		in.log.Warn("tcpipe: connection cut", append(args, "reason", err)...)
	}
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
	if in.g.Stopped() {
		return ErrServerClosed
	}
	for _, p := range in.targetPorts {
		if p == 0 {
			return errors.New("tcpipe: port 0 in TargetPorts; list ports from 1 to 65535")
		}
	}
	listen := in.listen
	if listen == nil {
		listen = net.Listen
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
		l, err := listen("tcp", net.JoinHostPort(in.bind, strconv.Itoa(int(p))))
		if err != nil {
			return fail(fmt.Errorf("tcpipe: cannot accept user applications on port %d: %w", p, err))
		}
		lns = append(lns, l)
	}
	in.listened = true
	in.users = make(map[uint16]*userPort, len(in.ports))
	for _, p := range in.ports {
		in.users[p] = new(userPort)
	}
	if in.server {
		in.warnOpenTarget()
	}
	for i, l := range lns {
		port := in.ports[i]
		in.log.Info("tcpipe: accepting user applications", "addr", l.Addr())
		if !in.g.Go(func() { in.acceptUsers(l, port) }) {
			l.Close()
		}
	}
	return nil
}

// acceptPartner takes c, a connection to the server's partner port, as
// the partner link if it may be (SPEC.md, "One partner"): with a secret,
// once it has proved it holds it, replacing the link before it; without,
// only while there is no partner link.
func (in *instance) acceptPartner(c net.Conn) {
	keepAlive(c)
	br := bufio.NewReader(c)
	if in.secret != nil {
		in.mu.Lock()
		full := in.handshakes >= maxHandshakes
		if !full {
			in.handshakes++
		}
		in.mu.Unlock()
		if full {
			in.log.Warn("tcpipe: partner refused", "remote", c.RemoteAddr(),
				"reason", fmt.Sprintf("tcpipe: %d partner links are in their handshake already", maxHandshakes))
			return
		}
		err := serverHandshake(c, br, in.secret, in.handshake)
		in.mu.Lock()
		in.handshakes--
		in.mu.Unlock()
		if err != nil {
			in.log.Warn("tcpipe: partner refused", "remote", c.RemoteAddr(), "reason", err)
			return
		}
	}
	in.serveLink(c, br, nil)
}

// serveLink carries connections over the partner link c, read through
// br, until it ends, the instance closes or stop is closed. A partner
// that proved the secret replaces the link before it, which may be dead
// unnoticed (the wire has no keepalive); without a secret, a link while
// another is up is refused with errPartnerUp.
func (in *instance) serveLink(c net.Conn, br *bufio.Reader, stop <-chan struct{}) error {
	backlog := 0 // the session's default
	if in.target == "" {
		backlog = -1 // no target: every Connect is answered with Disconnect
	}
	in.mu.Lock()
	if in.g.Closed() {
		in.mu.Unlock()
		return ErrServerClosed
	}
	old := in.partner
	if old != nil && in.secret == nil {
		in.mu.Unlock()
		in.log.Warn("tcpipe: partner refused", "remote", c.RemoteAddr(), "partner", old.RemoteAddr(), "reason", errPartnerUp)
		return errPartnerUp
	}
	var s *mux.Session
	fr := newFramer(br, c)
	fr.heard = func(port uint16, end bool) {
		in.mu.Lock()
		defer in.mu.Unlock()
		in.partnerSaid(s, port, end) // s is set: the link is read only once in.mu is free
	}
	s = mux.New(c, fr, mux.Config{
		Name:          "tcpipe partner link with " + c.RemoteAddr().String(),
		AcceptBacklog: backlog,
		MaxBuffer:     in.maxBuffer,
		StallTimeout:  in.stallTimeout,
		Logger:        in.log,
	})
	in.partner = s
	in.mu.Unlock()
	if old != nil {
		in.log.Warn("tcpipe: a partner that proved the secret replaces the link before it; the old link's user connections are closed",
			"remote", c.RemoteAddr(), "old", old.RemoteAddr())
		closeOld := func() { old.Close() }
		if !in.g.Go(closeOld) { // it may linger; the new link need not wait
			closeOld()
		}
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
			if !in.g.Go(func() { in.serveTarget(st) }) {
				st.Close()
			}
		case <-s.Done():
			err = s.Err()
			break loop
		case <-in.g.Done():
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
	if !in.allowed(uint16(port)) {
		in.log.Warn("tcpipe: the partner asked for a port of the target that is not allowed; answering Disconnect (allow it in TargetPorts, rtcp tcpipe -target-ports; by default the ports are -p's)",
			"target", addr, "partner", st.Session().RemoteAddr())
		st.Close()
		return
	}
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
	if !in.g.Track(c) {
		c.Close()
		st.Close()
		return
	}
	defer in.g.Release(c)
	in.log.Debug("tcpipe: carrying the partner's connection", "target", addr)
	_, err = relay.Join(relay.FullClose(c), st, nil)
	in.logEnd(err, "port", port, "target", addr)
}

// close stops accepting, closes the partner link and every connection,
// and waits for the instance's goroutines. The partner link ends with its
// connection, and serveLink then closes its session.
func (in *instance) close() {
	in.cancel()
	in.g.Close()
}
