package cccp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
)

// memNet is an in-memory network of listeners by port, with connections
// that carry the addresses a test gives them, so that the proxy runs
// inside a synctest bubble and ip_whitelist sees real-looking addresses.
type memNet struct {
	mu   sync.Mutex
	lns  map[int]*memListener
	fail error // if not nil, Listen fails with it
}

func newMemNet() *memNet { return &memNet{lns: make(map[int]*memListener)} }

// Listen is a Proxy.Listen: it listens on the port of addr.
func (n *memNet) Listen(network, addr string) (net.Listener, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(ps)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	if n.lns[port] != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRINUSE}
	}
	l := &memListener{n: n, port: port, ch: make(chan net.Conn), closed: make(chan struct{})}
	n.lns[port] = l
	return l, nil
}

// Dial connects from the address from to port.
func (n *memNet) Dial(ctx context.Context, from string, port int) (net.Conn, error) {
	c, _, err := n.dialBoth(ctx, from, port)
	return c, err
}

// dialBoth is Dial that also returns the listener's side of the
// connection, to see when the server closes it.
func (n *memNet) dialBoth(ctx context.Context, from string, port int) (net.Conn, *addrConn, error) {
	n.mu.Lock()
	l := n.lns[port]
	n.mu.Unlock()
	if l == nil {
		return nil, nil, fmt.Errorf("dial port %d: %w", port, syscall.ECONNREFUSED)
	}
	a, b := net.Pipe()
	fromAddr := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(from))
	toAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	srv := newAddrConn(b, toAddr, fromAddr)
	select {
	case l.ch <- srv:
		return newAddrConn(a, fromAddr, toAddr), srv, nil
	case <-l.closed:
		return nil, nil, fmt.Errorf("dial port %d: %w", port, syscall.ECONNREFUSED)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// open reports whether something listens on port.
func (n *memNet) open(port int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lns[port] != nil
}

type memListener struct {
	n      *memNet
	port   int
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.n.mu.Lock()
		if l.n.lns[l.port] == l {
			delete(l.n.lns, l.port)
		}
		l.n.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.port} }

type addrConn struct {
	net.Conn
	local, remote net.Addr
	once          sync.Once
	closed        chan struct{} // closed by Close
}

func newAddrConn(c net.Conn, local, remote net.Addr) *addrConn {
	return &addrConn{Conn: c, local: local, remote: remote, closed: make(chan struct{})}
}

func (c *addrConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// isClosed reports whether Close has been called.
func (c *addrConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *addrConn) LocalAddr() net.Addr  { return c.local }
func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

var errListen = errors.New("listen: permission denied")
