package mihini

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"rtcp/internal/mux"
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
	closeGrace time.Duration
	maxBuffer  int
	earlyMax   int // device side only
	log        *slog.Logger
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
	s := mux.New(c, fr, mux.Config{
		Name:            "Mihini link from device " + c.RemoteAddr().String(),
		OpenerAssignsID: true,
		NextID:          fr.nextID,
		AnswerClose:     true,
		AcceptBacklog:   -1, // a device opens nothing
		MaxBuffer:       cfg.maxBuffer,
	})
	return &deviceLink{s: s, fr: fr, remote: c.RemoteAddr()}, nil
}

// open starts a session to service (host:port, already checked) on the
// device: a CONNECT goes out at once, DATA may follow before the device
// has dialled, and the device answers CLOSE if it cannot.
func (l *deviceLink) open(ctx context.Context, service string) (net.Conn, error) {
	st, err := l.s.Open(ctx, "", service)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// linkServer accepts device links and keeps the newest: the code a Server
// and a Door share. up is called with each link once its LISTEN has come,
// and runs until the link ends or the server closes (done).
type linkServer struct {
	handshakeTimeout time.Duration
	cfg              linkConfig
	up               func(l *deviceLink, done <-chan struct{})

	// ready, if set, is called by up once a link takes clients, and gone
	// once a link is no longer used: hooks for tests, which have no other
	// way to know (LISTEN has no answer).
	ready, gone func()

	initOnce sync.Once
	mu       sync.Mutex
	cur      *deviceLink
	lns      map[net.Listener]struct{}
	conns    map[net.Conn]struct{}
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

func (ls *linkServer) init() {
	ls.initOnce.Do(func() {
		if ls.handshakeTimeout <= 0 {
			ls.handshakeTimeout = defaultHandshakeTimeout
		}
		ls.lns = make(map[net.Listener]struct{})
		ls.conns = make(map[net.Conn]struct{})
		ls.done = make(chan struct{})
	})
}

// current returns the link that takes new clients.
func (ls *linkServer) current() (*deviceLink, error) {
	ls.init()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return nil, ErrServerClosed
	}
	if ls.cur == nil {
		return nil, ErrNoDevice
	}
	return ls.cur, nil
}

// serve runs handle for each connection l accepts, in a goroutine the
// server waits for on Close. It always returns a non-nil error.
func (ls *linkServer) serve(l net.Listener, handle func(net.Conn)) error {
	ls.init()
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	ls.lns[l] = struct{}{}
	ls.mu.Unlock()
	defer func() {
		ls.mu.Lock()
		delete(ls.lns, l)
		ls.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ls.isClosed() {
				return ErrServerClosed
			}
			if temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				ls.cfg.log.Warn("mihini: accept failed; retrying", "addr", l.Addr(), "err", err, "retry_in", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ls.done:
					t.Stop()
				}
				continue
			}
			return err
		}
		delay = 0
		if !ls.track(c, true) {
			c.Close()
			return ErrServerClosed
		}
		ls.wg.Go(func() {
			defer ls.track(c, false)
			defer c.Close()
			handle(c)
		})
	}
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

func (ls *linkServer) isClosed() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.closed
}

func (ls *linkServer) track(c net.Conn, add bool) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if add {
		if ls.closed {
			return false
		}
		ls.conns[c] = struct{}{}
	} else {
		delete(ls.conns, c)
	}
	return true
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
	ls.mu.Lock()
	old := ls.cur
	ls.cur = l
	ls.mu.Unlock()
	if old != nil {
		ls.cfg.log.Info("mihini: a new device link replaces the old one", "old", old.remote, "new", l.remote)
		ls.wg.Go(func() { old.s.Close() }) // it may linger; the new link need not wait
	}
	ls.cfg.log.Info("mihini: device link up", "remote", l.remote)
	ls.up(l, ls.done)
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
	ls.mu.Lock()
	if !ls.closed {
		ls.closed = true
		close(ls.done)
	}
	for l := range ls.lns {
		l.Close()
	}
	for c := range ls.conns {
		reset(c)
	}
	ls.mu.Unlock()
	ls.wg.Wait()
	return nil
}

func (ls *linkServer) isReady() {
	if ls.ready != nil {
		ls.ready()
	}
}

// reset closes c so that its peer sees an error, not a clean end: the
// connection was cut off, it did not finish.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
