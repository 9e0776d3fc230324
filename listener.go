package rtcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// ListenConfig configures an indirect server. The zero value is ready to
// use: one JSON link to the DP.
type ListenConfig struct {
	// Transport selects the links' transport; the zero value is the
	// seed's JSON protocol.
	Transport Transport

	// PoolSize is the number of links kept to the DP; the DP spreads new
	// sessions over them. Zero means 1.
	PoolSize int

	// Dial opens a TCP connection to the DP. Nil means a net.Dialer. Tests
	// inject in-memory pipes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Owner identifies this server to the DP, so that the DP tells the
	// server's own links (its pool, or a link coming back after a drop)
	// from a different server that wants the same name. Empty means a
	// random identity for each Listener.
	Owner string

	// MinBackoff and MaxBackoff bound the wait before dialling again after
	// a link is lost (exponential, full jitter). Defaults 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	// Logger receives logs of links lost and regained. Nil is silent.
	Logger *slog.Logger
}

// Listen announces an indirect server named name at the DP addr, or, with
// an empty name, listens on the TCP address addr (a direct server). The
// context bounds the first connection to the DP only.
//
// The returned listener outlives its links: when a link or the DP goes
// away it dials again, and Accept keeps blocking meanwhile.
func (lc *ListenConfig) Listen(ctx context.Context, addr, name string) (net.Listener, error) {
	if name == "" {
		var nlc net.ListenConfig
		return nlc.Listen(ctx, "tcp", addr)
	}
	l := &Listener{
		cfg:    *lc,
		dp:     addr,
		addr:   &Addr{Name: name, Addr: addr},
		accept: make(chan *Conn),
		closed: make(chan struct{}),
	}
	if l.cfg.PoolSize <= 0 {
		l.cfg.PoolSize = 1
	}
	if l.cfg.MinBackoff <= 0 {
		l.cfg.MinBackoff = 100 * time.Millisecond
	}
	if l.cfg.MaxBackoff <= 0 {
		l.cfg.MaxBackoff = 30 * time.Second
	}
	if l.cfg.Owner == "" {
		var b [16]byte
		rand.Read(b[:])
		l.cfg.Owner = hex.EncodeToString(b[:])
	}
	if lc.Transport != TransportJSON {
		return nil, l.opErr("listen", fmt.Errorf("%w: transport %v", ErrNotImplemented, lc.Transport))
	}
	first, err := l.connect(ctx)
	if err != nil {
		return nil, l.opErr("listen", err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(l.cfg.PoolSize)
	go l.keep(first)
	for i := 1; i < l.cfg.PoolSize; i++ {
		go l.keep(nil)
	}
	return l, nil
}

// Listener is an indirect server: it keeps links to a discover point under
// its name and hands out the sessions clients open through them.
type Listener struct {
	cfg    ListenConfig
	dp     string
	addr   *Addr
	accept chan *Conn
	closed chan struct{}
	ctx    context.Context // ends when the listener is closed
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	links map[*mux.Session]struct{}
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next session a client opens to this server.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, l.opErr("accept", net.ErrClosed)
	}
}

// Close stops accepting: the DP refuses new sessions, and Accept returns
// net.ErrClosed. Sessions already accepted go on until they are closed,
// the way a TCP listener leaves its accepted connections alone; a link
// ends when its last session does.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.cancel()
	})
	l.wg.Wait()
	return nil
}

// Addr returns "name@dp-address".
func (l *Listener) Addr() net.Addr { return l.addr }

// NumLinks returns the number of links to the DP that are up now.
func (l *Listener) NumLinks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.links)
}

func (l *Listener) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "rtcp", Addr: l.addr, Err: err}
}

func (l *Listener) log() *slog.Logger {
	if l.cfg.Logger == nil {
		return discardLogger
	}
	return l.cfg.Logger
}

var discardLogger = slog.New(slog.DiscardHandler)

// keep keeps one link up until the listener is closed.
func (l *Listener) keep(s *mux.Session) {
	defer l.wg.Done()
	failures := 0
	for {
		if s == nil {
			ctx, cancel := context.WithTimeout(l.ctx, defaultHandshakeTimeout)
			var err error
			s, err = l.connect(ctx)
			cancel()
			if err != nil {
				failures++
				wait := l.backoff(failures)
				l.log().Warn("rtcp: cannot reach DP; retrying", "name", l.addr.Name, "dp", l.dp, "err", err, "retry_in", wait)
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					continue
				case <-l.closed:
					t.Stop()
					return
				}
			}
			l.log().Info("rtcp: link to DP up", "name", l.addr.Name, "dp", l.dp)
		}
		failures = 0
		if !l.serve(s) {
			return
		}
		l.log().Warn("rtcp: link to DP lost", "name", l.addr.Name, "dp", l.dp, "err", s.Err())
		s = nil
	}
}

// backoff returns the wait before attempt n (n >= 1): exponential from
// MinBackoff, capped at MaxBackoff, with full jitter.
func (l *Listener) backoff(n int) time.Duration {
	d := l.cfg.MinBackoff
	for i := 1; i < n && d < l.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, l.cfg.MaxBackoff)
	return time.Duration(mrand.Int64N(int64(d)) + 1)
}

// serve hands out s's sessions until s ends (true: dial again) or the
// listener is closed (false).
func (l *Listener) serve(s *mux.Session) bool {
	l.mu.Lock()
	if l.links == nil {
		l.links = make(map[*mux.Session]struct{})
	}
	l.links[s] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.links, s)
		l.mu.Unlock()
	}()
	for {
		var st *mux.Stream
		select {
		case st = <-s.Streams():
		case <-s.Done():
			return true
		case <-l.closed:
			s.Drain()
			return false
		}
		c := newConn(st, nil)
		select {
		case l.accept <- c:
		case <-l.closed:
			st.Close()
			s.Drain()
			return false
		}
	}
}

// connect dials the DP and registers the name: one link.
func (l *Listener) connect(ctx context.Context) (*mux.Session, error) {
	c, err := dialTCP(ctx, l.cfg.Dial, l.dp)
	if err != nil {
		return nil, err
	}
	stop := watchContext(ctx, c)
	ours := &plan5.Aloha{R: plan5.RoleIS, N: l.addr.Name, Owner: l.cfg.Owner}
	plan5link.Offer(ours, plan5.DefaultMaxLine)
	r := plan5.NewReader(c, plan5.DefaultMaxLine)
	theirs, err := exchangeAloha(c, r, ours, l.dp)
	stopErr := stop()
	if err == nil {
		err = stopErr
	}
	if err != nil {
		c.Close()
		var re *RefusedError
		if errors.As(err, &re) && re.Reason == errNameTakenReason(l.addr.Name) {
			return nil, fmt.Errorf("%w: %v", ErrNameTaken, err)
		}
		return nil, ctxErr(ctx, err)
	}
	cfg := plan5link.Config(ours, theirs)
	cfg.Name = "link to DP " + l.dp
	local := l.addr
	dpAddr := l.dp
	cfg.StreamAddrs = func(name, addr string, _ bool) (net.Addr, net.Addr) {
		if addr == "" {
			addr = dpAddr
		}
		return local, &Addr{Name: name, Addr: addr}
	}
	return mux.New(c, plan5link.NewFramer(r, c), cfg), nil
}

// errNameTakenReason is the DP's refusal text for a taken name; Listen
// turns it back into ErrNameTaken.
func errNameTakenReason(name string) string {
	return fmt.Sprintf("name %q is already served by another server; choose another name, or stop the other server", name)
}
