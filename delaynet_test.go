package rtcp

import (
	"context"
	"net"
	"sync"
	"time"
)

// delayNet is an in-memory network for synctest with a distance in it: a
// connection dialled by a function of dialer(label, rtt) crosses a path
// with that round trip. Its dial takes a round trip (the DP accepts it
// half way, as a SYN arrives), and every byte arrives rtt/2 after it was
// written, without a bandwidth limit. With rtt 0 it is a plain pipe.
type delayNet struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // the goroutines that carry bytes

	mu    sync.Mutex // guards links and dials
	links map[string][]*delayLink
	dials map[string]int
}

const delayDP = "dp.delay:9000"

func newDelayNet() *delayNet {
	return &delayNet{
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		links:  make(map[string][]*delayLink),
		dials:  make(map[string]int),
	}
}

func (n *delayNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the listener; the connections made stay up.
func (n *delayNet) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

func (n *delayNet) Addr() net.Addr { return delayAddr{} }

type delayAddr struct{}

func (delayAddr) Network() string { return "delaynet" }
func (delayAddr) String() string  { return delayDP }

// cutAll stops the listener, closes every connection made and waits
// until nothing is in flight.
func (n *delayNet) cutAll() {
	n.Close()
	n.mu.Lock()
	for _, ls := range n.links {
		for _, l := range ls {
			l.cut()
		}
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// dialer returns a dial function whose connections carry label and cross
// a path of round trip rtt.
func (n *delayNet) dialer(label string, rtt time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		n.dials[label]++
		n.mu.Unlock()
		time.Sleep(rtt / 2) // the SYN
		l := n.newLink(rtt / 2)
		select {
		case n.conns <- l.dp:
		case <-n.closed:
			l.cut()
			return nil, &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
		case <-ctx.Done():
			l.cut()
			return nil, ctx.Err()
		}
		n.mu.Lock()
		n.links[label] = append(n.links[label], l)
		n.mu.Unlock()
		time.Sleep(rtt / 2) // the SYN-ACK
		return l.peer, nil
	}
}

// dialCount returns the number of dials made with label.
func (n *delayNet) dialCount(label string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[label]
}

// link returns the i-th connection dialled with label.
func (n *delayNet) link(label string, i int) *delayLink {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[label][i]
}

// delayLink is one connection of a delayNet: peer is the dialler's end,
// dp the DP's.
type delayLink struct {
	peer, dp net.Conn
	ends     []net.Conn // every pipe end, to cut
}

func (n *delayNet) newLink(oneWay time.Duration) *delayLink {
	if oneWay == 0 {
		peer, dp := net.Pipe()
		return &delayLink{peer: peer, dp: dp, ends: []net.Conn{peer, dp}}
	}
	peer, in := net.Pipe()
	out, dp := net.Pipe()
	l := &delayLink{peer: peer, dp: dp, ends: []net.Conn{peer, in, out, dp}}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); delay(in, out, oneWay) }()
	go func() { defer n.wg.Done(); delay(out, in, oneWay) }()
	return l
}

// cut closes both ends at once, as a path that fails.
func (l *delayLink) cut() {
	for _, c := range l.ends {
		c.Close()
	}
}

// delay copies src to dst, each piece oneWay after it was read; src's end
// reaches dst as late. A write that fails closes src, so that its writer
// learns.
func delay(src, dst net.Conn, oneWay time.Duration) {
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
		if _, err := dst.Write(p.b); err != nil {
			failed = true
			src.Close()
		}
	}
}
