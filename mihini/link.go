package mihini

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
	"rtcp/internal/serve"
	wire "rtcp/protocol/mihini"
)

// Errors the server side returns. Each says what to do.
var (
	// ErrServerClosed is returned by the Serve methods of a Server or a
	// Door after Close, and by Server.DialContext.
	ErrServerClosed = errors.New("mihini: server closed")

	// ErrNoDevice is returned when a client arrives while no device link
	// is up: the client is refused at once.
	ErrNoDevice = errors.New("mihini: no device is connected to this server; clients are refused until a device dials in and sends LISTEN")
)

// Defaults of the zero values.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultCloseGrace       = 5 * time.Second
)

var discard = slog.New(slog.DiscardHandler)

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}

// linkConfig is what both ends of a link are tuned with.
type linkConfig struct {
	closeGrace   time.Duration
	maxBuffer    int
	stallTimeout time.Duration
	earlyMax     int // device side only
	log          *slog.Logger
}

// muxConfig returns the session layer's configuration of a link named
// name: the wire has no flow control, so a full session holds the link
// (MaxBuffer) and a stalled one is cut after StallTimeout, logged.
func (c linkConfig) muxConfig(name string) mux.Config {
	return mux.Config{
		Name:         name,
		MaxBuffer:    c.maxBuffer,
		StallTimeout: c.stallTimeout,
		Logger:       c.log,
	}
}

// logEnd logs how a session that relay.Join carried ended: a cut (a lost
// link, a reset, a stalled reader) at Warn with its reason, unless this
// side is shutting down; a clean end at Debug.
func logEnd(log *slog.Logger, err error, closing bool) {
	switch {
	case !relay.Cut(err):
		log.Debug("mihini: session closed")
	case closing:
		log.Info("mihini: session cut by the shutdown", "reason", err)
	case errors.As(err, new(*mux.CutError)):
		// The session layer cut it and logged why at Warn, as it did.
		log.Info("mihini: session cut", "reason", err)
	default:
		log.Warn("mihini: session cut", "reason", err)
	}
}

func (c linkConfig) grace() time.Duration {
	if c.closeGrace <= 0 {
		return defaultCloseGrace
	}
	return c.closeGrace
}

// deviceLink is the server side of one device's link.
type deviceLink struct {
	s      *mux.Session
	fr     *framer
	remote net.Addr
}

// acceptLink reads a device's LISTEN from c, which must come within
// timeout, and starts the server side of the link.
func acceptLink(c net.Conn, timeout time.Duration, cfg linkConfig) (*deviceLink, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	r := wire.NewReader(c)
	f, err := r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("mihini: device %s sent no LISTEN (00 00 04 00) as its first frame: %w", c.RemoteAddr(), err)
	}
	if f.Command != wire.Listen {
		return nil, fmt.Errorf("mihini: device %s began with %v instead of LISTEN (00 00 04 00)", c.RemoteAddr(), f)
	}
	c.SetReadDeadline(time.Time{})
	fr := newFramer(false, r, c, cfg.grace(), 0, cfg.log)
	mc := cfg.muxConfig("Mihini link from device " + c.RemoteAddr().String())
	mc.AcceptBacklog = -1 // a device opens nothing
	s := mux.New(c, fr, mc)
	return &deviceLink{s: s, fr: fr, remote: c.RemoteAddr()}, nil
}

// open starts a session to service (host:port, already checked) on the
// device: a CONNECT goes out at once, DATA may follow before the device
// has dialled, and the device answers CLOSE if it cannot.
func (l *deviceLink) open(ctx context.Context, service string) (*mux.Stream, error) {
	return l.s.Open(ctx, "", service)
}

// linkServer accepts device links and keeps the newest: the code a Server
// and a Door share. admit, if set, is asked about each link once its
// LISTEN has come, before the link replaces the current one: a link it
// refuses is closed and replaces nothing, and release is called when the
// admitted link ends. up is then called with the link, and runs until the
// link ends or the server closes (done).
type linkServer struct {
	handshakeTimeout time.Duration
	cfg              linkConfig
	admit            func(l *deviceLink) (release func(), err error)
	up               func(l *deviceLink, done <-chan struct{})

	// ready, if set, is called by up once a link takes clients, and gone
	// once a link is no longer used: hooks for tests, which have no other
	// way to know (LISTEN has no answer).
	ready, gone func()

	initOnce sync.Once
	g        serve.Group // listeners, device and client connections, goroutines
	mu       sync.Mutex
	cur      *deviceLink
}

func (ls *linkServer) init() {
	ls.initOnce.Do(func() {
		if ls.handshakeTimeout <= 0 {
			ls.handshakeTimeout = defaultHandshakeTimeout
		}
		ls.g.Logger = ls.cfg.log
		ls.g.Reset = true // a cut connection did not finish: its peer sees an error
	})
}

// current returns the link that takes new clients.
func (ls *linkServer) current() (*deviceLink, error) {
	ls.init()
	if ls.g.Closed() {
		return nil, ErrServerClosed
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.cur == nil {
		return nil, ErrNoDevice
	}
	return ls.cur, nil
}

// serve runs handle for each connection l accepts, in a goroutine the
// server waits for on Close. It always returns a non-nil error; after
// Close, ErrServerClosed. It closes l when it returns.
func (ls *linkServer) serve(l net.Listener, handle func(net.Conn)) error {
	ls.init()
	err := ls.g.Serve(l, func(c net.Conn) bool { handle(c); return false })
	if err == serve.ErrClosed {
		return ErrServerClosed
	}
	return err
}

// serveDevice runs one device connection: LISTEN, then the link, which
// replaces the one before it. There is no keepalive on the wire, so the
// old link may be dead without either end knowing; a device that dials
// again must not wait for that to be noticed.
func (ls *linkServer) serveDevice(c net.Conn) {
	l, err := acceptLink(c, ls.handshakeTimeout, ls.cfg)
	if err != nil {
		ls.cfg.log.Info("mihini: device refused", "remote", c.RemoteAddr(), "err", err)
		return
	}
	release := func() {}
	if ls.admit != nil {
		// A stranger's LISTEN that the admission refuses must not evict
		// the device that holds the link.
		if release, err = ls.admit(l); err != nil {
			ls.cfg.log.Warn("mihini: device refused", "remote", l.remote, "err", err)
			l.s.Close()
			return
		}
	}
	ls.mu.Lock()
	old := ls.cur
	ls.cur = l
	ls.mu.Unlock()
	if old != nil {
		ls.cfg.log.Info("mihini: a new device link replaces the old one", "old", old.remote, "new", l.remote)
		closeOld := func() { old.s.Close() }
		if !ls.g.Go(closeOld) { // it may linger; the new link need not wait
			closeOld()
		}
	}
	ls.cfg.log.Info("mihini: device link up", "remote", l.remote)
	ls.up(l, ls.g.Done())
	release()
	ls.mu.Lock()
	if ls.cur == l {
		ls.cur = nil
	}
	ls.mu.Unlock()
	if ls.gone != nil {
		ls.gone()
	}
	l.s.Close()
	ls.cfg.log.Info("mihini: device link down", "remote", l.remote, "err", l.s.Err())
}

// close stops the listeners, ends every link and its sessions, and waits
// for the goroutines the server started.
func (ls *linkServer) close() error {
	ls.init()
	ls.g.Close()
	return nil
}

func (ls *linkServer) isReady() {
	if ls.ready != nil {
		ls.ready()
	}
}
