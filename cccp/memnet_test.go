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

	"rtcp/internal/memnet"
)

// memNet is a host of in-memory listeners by port (memnet.Listener),
// with connections that carry the addresses a test gives them, so that
// the proxy runs inside a synctest bubble and ip_whitelist sees
// real-looking addresses.
type memNet struct {
	mu   sync.Mutex // guards lns and fail
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
	l := &memListener{Listener: memnet.NewAt(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}), n: n, port: port}
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
func (n *memNet) dialBoth(ctx context.Context, from string, port int) (net.Conn, *memnet.Conn, error) {
	n.mu.Lock()
	l := n.lns[port]
	n.mu.Unlock()
	if l == nil {
		return nil, nil, fmt.Errorf("dial port %d: %w", port, syscall.ECONNREFUSED)
	}
	c, srv, err := l.DialFrom(ctx, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(from)))
	if errors.Is(err, net.ErrClosed) {
		return nil, nil, fmt.Errorf("dial port %d: %w", port, syscall.ECONNREFUSED)
	}
	if err != nil {
		return nil, nil, err
	}
	return c, srv, nil
}

// open reports whether something listens on port.
func (n *memNet) open(port int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lns[port] != nil
}

// memListener is a memnet.Listener that frees its port when closed.
type memListener struct {
	*memnet.Listener
	n    *memNet
	port int
	once sync.Once
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		l.Listener.Close()
		l.n.mu.Lock()
		if l.n.lns[l.port] == l {
			delete(l.n.lns, l.port)
		}
		l.n.mu.Unlock()
	})
	return nil
}

var errListen = errors.New("listen: permission denied")
