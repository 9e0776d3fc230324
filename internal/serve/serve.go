// Package serve is the accept loop every rtcp server shares: accept,
// back off on temporary errors, serve each connection in a goroutine, and
// on Close end the listeners, the connections and the goroutines.
package serve

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"rtcp/internal/tcpreset"
)

// ErrClosed is returned by Serve once the Group no longer accepts
// connections (after CloseListeners or Close). Servers map it to their own
// sentinel (mihini.ErrServerClosed, cccp.ErrProxyClosed, ...).
var ErrClosed = errors.New("serve: closed; the server is shutting down")

// Bounds of the wait before Accept is tried again after a temporary error:
// it starts at minDelay and doubles up to maxDelay, as in net/http.
const (
	minDelay = 5 * time.Millisecond
	maxDelay = time.Second
)

// A Group runs accept loops and the goroutines that serve their
// connections, and ends them all on Close.
//
// The zero value is ready to use. A Group is stopped in two steps, as an
// http.Server is: CloseListeners stops taking new connections (Serve
// returns ErrClosed, Track refuses) while those it has go on; Close also
// cuts every connection it tracks and waits for every goroutine it runs.
// A Group is not reused after Close.
type Group struct {
	// Logger receives a warning for each Accept error that is retried.
	// Nil is silent.
	Logger *slog.Logger

	// Reset makes Close reset the TCP connections it closes (SO_LINGER 0),
	// so that their peers see an error rather than a clean end: a
	// connection cut by Close did not finish.
	Reset bool

	mu       sync.Mutex
	lns      map[*net.Listener]struct{} // by pointer: a Listener need not be comparable
	conns    map[net.Conn]struct{}
	stopping chan struct{} // closed by CloseListeners and Close
	done     chan struct{} // closed by Close
	stopped  bool
	closed   bool
	wg       sync.WaitGroup
}

// initLocked makes the zero value usable; call with g.mu held.
func (g *Group) initLocked() {
	if g.done == nil {
		g.lns = make(map[*net.Listener]struct{})
		g.conns = make(map[net.Conn]struct{})
		g.stopping = make(chan struct{})
		g.done = make(chan struct{})
	}
}

// Serve accepts connections on l and calls handle for each in a goroutine
// that Close waits for. When handle returns, c is closed and forgotten,
// unless handle returns kept: then c lives on (in a session, say) and
// whoever owns it calls Release when it is done; Close still closes it.
//
// Accept errors that may pass (too many open files, a connection aborted
// before it was accepted, a timeout) are retried after 5 ms, doubling up
// to 1 s. Serve always returns a non-nil error: ErrClosed after
// CloseListeners or Close, or the first other Accept error. It closes l
// when it returns.
func (g *Group) Serve(l net.Listener, handle func(c net.Conn) (kept bool)) error {
	g.mu.Lock()
	g.initLocked()
	if g.stopped {
		g.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	g.lns[&l] = struct{}{}
	stopping := g.stopping
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.lns, &l)
		g.mu.Unlock()
		l.Close()
	}()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if g.Stopped() {
				return ErrClosed
			}
			if !temporary(err) {
				return err
			}
			delay = min(max(2*delay, minDelay), maxDelay)
			if g.Logger != nil {
				g.Logger.Warn("accept failed; retrying", "addr", l.Addr(), "err", err, "retry_in", delay)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-stopping:
				t.Stop()
			}
			continue
		}
		delay = 0
		if !g.add(c, 1) {
			c.Close()
			return ErrClosed
		}
		go func() {
			defer g.wg.Done()
			g.handle(c, handle)
		}()
	}
}

// ServeConn serves c, a connection that came some other way than through
// a listener of Serve (a WebSocket, say), as Serve serves those it
// accepts, but in the calling goroutine; Close waits for it too. After
// CloseListeners or Close it closes c and returns ErrClosed at once;
// otherwise it returns nil when handle has.
func (g *Group) ServeConn(c net.Conn, handle func(c net.Conn) (kept bool)) error {
	if !g.add(c, 1) {
		c.Close()
		return ErrClosed
	}
	defer g.wg.Done()
	g.handle(c, handle)
	return nil
}

func (g *Group) handle(c net.Conn, handle func(net.Conn) bool) {
	if !handle(c) {
		c.Close()
		g.Release(c)
	}
}

// add tracks c and counts n goroutines that serve it; false once the
// Group no longer takes connections. The check and wg.Add share the lock
// with Close's marking, so that no Add comes after Close's Wait begins.
func (g *Group) add(c net.Conn, n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.initLocked()
	if g.stopped {
		return false
	}
	g.conns[c] = struct{}{}
	g.wg.Add(n)
	return true
}

// Track adds c, a connection made elsewhere (dialled, or handed over), to
// those Close closes; call Release when it is done. It returns false, and
// does not track c, after CloseListeners or Close: the caller then closes
// c itself.
func (g *Group) Track(c net.Conn) bool { return g.add(c, 0) }

// Release forgets c, tracked by Track or kept by a handler of Serve. It
// does not close c.
func (g *Group) Release(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
}

// Conns returns the number of connections the Group tracks.
func (g *Group) Conns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Go runs f in a goroutine that Close waits for. After Close it runs
// nothing and returns false; until then, also after CloseListeners, it
// runs f: the work in flight may need goroutines to finish.
func (g *Group) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.initLocked()
	if g.closed {
		return false
	}
	g.wg.Go(f)
	return true
}

// Done returns a channel that is closed when Close is called: the
// goroutines of the Group select on it to end.
func (g *Group) Done() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.initLocked()
	return g.done
}

// Closed reports whether Close has been called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Stopped reports whether CloseListeners or Close has been called: the
// Group takes no new connections.
func (g *Group) Stopped() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopped
}

// CloseListeners stops taking new connections, for a graceful shutdown:
// it closes every listener, so that each Serve returns ErrClosed, and
// makes Track refuse. The connections the Group has and its goroutines go
// on until they end or Close is called.
func (g *Group) CloseListeners() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *Group) stopLocked() {
	g.initLocked()
	if !g.stopped {
		g.stopped = true
		close(g.stopping)
	}
	for l := range g.lns {
		(*l).Close()
	}
}

// Close closes the listeners and every tracked connection, closes Done,
// and returns when every goroutine of the Group has ended. It may be
// called more than once, and from several goroutines; each call waits.
//
// Writes on every connection are stopped (a write deadline in the past)
// before any is closed: no goroutine can then pass a clean end from one
// connection it relays on to the other while Close cuts them, so every
// session ends with an error.
func (g *Group) Close() {
	g.mu.Lock()
	g.stopLocked()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
	conns := make([]net.Conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	// Outside the lock: a Close of some net.Conn may call back (Release).
	past := time.Unix(1, 0)
	for _, c := range conns {
		c.SetWriteDeadline(past)
	}
	for _, c := range conns {
		if g.Reset {
			tcpreset.Reset(c) // under TLS too, with no clean goodbye first
			continue
		}
		c.Close()
	}
	g.wg.Wait()
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
