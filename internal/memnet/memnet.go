// Package memnet is an in-memory network for tests in a testing/synctest
// bubble: a Listener whose dial functions hand one end of a connection
// to Accept and return the other.
//
// A connection is a net.Pipe, or, for a path with a distance or faults
// in it, two pipes joined by goroutines that carry the bytes:
//
//   - Dialer(label, rtt) crosses a path of round trip rtt: the dial takes
//     a round trip (Accept gets the connection half way, as a SYN
//     arrives), and every byte arrives rtt/2 after it was written,
//     without a bandwidth limit. With rtt 0 it is a plain pipe.
//   - TapDialer(label) crosses a tap that a test can make drop everything
//     (Link.Blackhole), the way a dead path or a peer that lost power
//     does: the sender notices nothing, the receiver gets nothing.
//
// Dials carry a label, so a test can find a connection again (Link,
// Last), count the dials (Dials) and make them fail (SetDown).
package memnet

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A DialFunc is the signature of net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// A Listener is a net.Listener of in-memory connections and the network
// they are dialled on.
type Listener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // the goroutines that carry bytes

	mu    sync.Mutex // guards links, down and dials
	links map[string][]*Link
	down  map[string]bool // dials with this label fail
	dials map[string][]time.Time
}

// New returns a Listener whose Addr is addr ("mem" if empty).
func New(addr string) *Listener {
	if addr == "" {
		addr = "mem"
	}
	return NewAt(Addr(addr))
}

// NewAt returns a Listener whose Addr is addr: a *net.TCPAddr, say, for
// code that looks at the addresses of its connections (see DialFrom).
func NewAt(addr net.Addr) *Listener {
	return &Listener{
		addr:   addr,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		links:  make(map[string][]*Link),
		down:   make(map[string]bool),
		dials:  make(map[string][]time.Time),
	}
}

// Accept waits for a dial.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the listener: Accept and every dial fail with
// net.ErrClosed. The connections made stay up.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the address given to New or NewAt.
func (l *Listener) Addr() net.Addr { return l.addr }

// An Addr is a Listener's address.
type Addr string

func (Addr) Network() string  { return "mem" }
func (a Addr) String() string { return string(a) }

// CutAll stops the listener, cuts every labelled connection and waits
// until nothing is in flight.
func (l *Listener) CutAll() {
	l.Close()
	l.mu.Lock()
	for _, ls := range l.links {
		for _, k := range ls {
			k.Cut()
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// DialContext connects to l over a plain pipe, unlabelled, and returns
// the dialler's end.
func (l *Listener) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	peer, far := net.Pipe()
	if err := l.hand(ctx, network, far); err != nil {
		peer.Close()
		far.Close()
		return nil, err
	}
	return peer, nil
}

// DialFrom connects to l from the address from over a plain pipe,
// unlabelled. Each end reports from and l.Addr() as its addresses, as a
// TCP connection does. It returns the dialler's end and the listener's.
func (l *Listener) DialFrom(ctx context.Context, from net.Addr) (peer, far *Conn, err error) {
	a, b := net.Pipe()
	peer = &Conn{Conn: a, local: from, remote: l.addr, closed: make(chan struct{})}
	far = &Conn{Conn: b, local: l.addr, remote: from, closed: make(chan struct{})}
	if err := l.hand(ctx, "tcp", far); err != nil {
		a.Close()
		b.Close()
		return nil, nil, err
	}
	return peer, far, nil
}

// A Conn is an end of a connection made by DialFrom: a pipe with
// addresses, which tells when it was closed.
type Conn struct {
	net.Conn
	local, remote net.Addr
	once          sync.Once
	closed        chan struct{} // closed by Close
}

// Close closes the pipe's end.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Closed is closed once Close has been called.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// hand gives c to Accept.
func (l *Listener) hand(ctx context.Context, network string, c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.closed:
		return &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Dialer returns a dial function whose connections carry label and cross
// a path of round trip rtt.
func (l *Listener) Dialer(label string, rtt time.Duration) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := l.count(label, network); err != nil {
			return nil, err
		}
		time.Sleep(rtt / 2) // the SYN
		k := l.newLink(rtt/2, false)
		if err := l.hand(ctx, network, k.Far); err != nil {
			k.Cut()
			return nil, err
		}
		l.keep(label, k)
		time.Sleep(rtt / 2) // the SYN-ACK
		return k.Peer, nil
	}
}

// TapDialer returns a dial function whose connections carry label and
// cross a tap that Link.Blackhole can make drop everything.
func (l *Listener) TapDialer(label string) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := l.count(label, network); err != nil {
			return nil, err
		}
		k := l.newLink(0, true)
		if err := l.hand(ctx, network, k.Far); err != nil {
			k.Peer.Close()
			k.Far.Close()
			k.Cut()
			return nil, err
		}
		l.keep(label, k)
		return k.Peer, nil
	}
}

// count records a dial with label, and fails it if label is down.
func (l *Listener) count(label, network string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dials[label] = append(l.dials[label], time.Now())
	if l.down[label] {
		return &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (memnet: " + label + " is down)")}
	}
	return nil
}

func (l *Listener) keep(label string, k *Link) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.links[label] = append(l.links[label], k)
}

// SetDown makes dials with label fail (or work again).
func (l *Listener) SetDown(label string, down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[label] = down
}

// Dials returns when each dial with label was made, failed ones included.
func (l *Listener) Dials(label string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.dials[label]...)
}

// Link returns the i-th connection made with label.
func (l *Listener) Link(label string, i int) *Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.links[label][i]
}

// Last returns the newest connection made with label, or nil.
func (l *Listener) Last(label string) *Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.links[label]
	if len(ks) == 0 {
		return nil
	}
	return ks[len(ks)-1]
}

// A Link is one connection: Peer is the dialler's end, Far the
// listener's.
type Link struct {
	Peer, Far net.Conn
	path      []net.Conn // what Cut closes
	drop      *atomic.Bool
}

func (l *Listener) newLink(oneWay time.Duration, tap bool) *Link {
	if oneWay == 0 && !tap {
		peer, far := net.Pipe()
		return &Link{Peer: peer, Far: far, path: []net.Conn{peer, far}}
	}
	peer, in := net.Pipe()
	out, far := net.Pipe()
	k := &Link{Peer: peer, Far: far, drop: new(atomic.Bool)}
	if tap {
		// A cut closes the middle: both ends read io.EOF.
		k.path = []net.Conn{in, out}
		l.wg.Add(2)
		go func() { defer l.wg.Done(); k.tap(in, out) }()
		go func() { defer l.wg.Done(); k.tap(out, in) }()
		return k
	}
	k.path = []net.Conn{peer, in, out, far}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); delay(in, out, oneWay, k.drop) }()
	go func() { defer l.wg.Done(); delay(out, in, oneWay, k.drop) }()
	return k
}

// Cut fails the path at once: a tapped link closes its middle, so both
// ends read io.EOF; any other closes every pipe end.
func (k *Link) Cut() {
	for _, c := range k.path {
		c.Close()
	}
}

// Blackhole makes the link drop everything both ways from now on. It
// panics on a plain pipe (Dialer with rtt 0), which has nothing in the
// middle to drop with.
func (k *Link) Blackhole() {
	if k.drop == nil {
		panic("memnet: Blackhole on a plain pipe; dial with TapDialer")
	}
	k.drop.Store(true)
}

// tap copies src to dst until either fails, dropping what it reads once
// told to, then cuts the link.
func (k *Link) tap(src, dst net.Conn) {
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !k.drop.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	k.Cut()
}

// delay copies src to dst, each piece oneWay after it was read; src's end
// reaches dst as late. A write that fails closes src, so that its writer
// learns. Once drop is set, pieces are dropped.
func delay(src, dst net.Conn, oneWay time.Duration, drop *atomic.Bool) {
	type piece struct {
		due time.Time
		b   []byte // nil: the end
	}
	q := make(chan piece, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- piece{time.Now().Add(oneWay), b[:n]}
			}
			if err != nil {
				q <- piece{due: time.Now().Add(oneWay)}
				return
			}
		}
	}()
	failed := false
	for p := range q {
		if failed {
			continue
		}
		time.Sleep(time.Until(p.due))
		if p.b == nil {
			dst.Close()
			continue
		}
		if drop.Load() {
			continue
		}
		if _, err := dst.Write(p.b); err != nil {
			failed = true
			src.Close()
		}
	}
}
