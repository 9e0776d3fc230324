package rtcp

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// faultNet is an in-memory network for tests of faults under synctest: a
// listener the DP serves, and dial functions for servers and clients.
// Every connection runs through a tap that a test can make drop
// everything, the way a dead path or a peer that lost power does: the
// sender notices nothing, the receiver gets nothing.
type faultNet struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	taps  map[string][]*tap // by the label of the dial function
	down  map[string]bool   // dials with this label fail
	dials map[string][]time.Time
}

func newFaultNet() *faultNet {
	return &faultNet{
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		taps:   make(map[string][]*tap),
		down:   make(map[string]bool),
		dials:  make(map[string][]time.Time),
	}
}

func (n *faultNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the listener; the connections made stay up.
func (n *faultNet) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

// cutAll stops the listener and cuts every connection.
func (n *faultNet) cutAll() {
	n.Close()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ts := range n.taps {
		for _, t := range ts {
			t.close()
		}
	}
}

func (n *faultNet) Addr() net.Addr { return faultAddr{} }

type faultAddr struct{}

func (faultAddr) Network() string { return "faultnet" }
func (faultAddr) String() string  { return "dp.test:9000" }

// dialer returns a dial function whose connections carry label.
func (n *faultNet) dialer(label string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.mu.Lock()
		n.dials[label] = append(n.dials[label], time.Now())
		down := n.down[label]
		n.mu.Unlock()
		if down {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (faultNet)")}
		}
		client, in := net.Pipe()
		out, server := net.Pipe()
		t := &tap{in: in, out: out}
		select {
		case n.conns <- server:
		case <-n.closed:
			client.Close()
			server.Close()
			t.close()
			return nil, &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
		case <-ctx.Done():
			client.Close()
			server.Close()
			t.close()
			return nil, ctx.Err()
		}
		n.mu.Lock()
		n.taps[label] = append(n.taps[label], t)
		n.mu.Unlock()
		t.wg.Add(2)
		go t.pipe(in, out)
		go t.pipe(out, in)
		return client, nil
	}
}

// dialDirect connects to the DP with no tap in between: for tests that
// make many connections and need no faults on them.
func (n *faultNet) dialDirect() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case n.conns <- server:
		return client, nil
	case <-n.closed:
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "faultnet", Err: net.ErrClosed}
	}
}

// setDown makes dials with label fail (or work again).
func (n *faultNet) setDown(label string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[label] = down
}

// lastTap returns the newest connection dialled with label.
func (n *faultNet) lastTap(label string) *tap {
	n.mu.Lock()
	defer n.mu.Unlock()
	ts := n.taps[label]
	if len(ts) == 0 {
		return nil
	}
	return ts[len(ts)-1]
}

func (n *faultNet) dialTimes(label string) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.dials[label]...)
}

// tap joins the two halves of one connection, and drops what it carries
// once told to.
type tap struct {
	in, out net.Conn // the dialler's half's far end, the DP's half's far end
	drop    atomic.Bool
	wg      sync.WaitGroup
}

func (t *tap) pipe(src, dst net.Conn) {
	defer t.wg.Done()
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !t.drop.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	t.close()
}

// blackhole makes the tap drop everything both ways from now on.
func (t *tap) blackhole() { t.drop.Store(true) }

func (t *tap) close() {
	t.in.Close()
	t.out.Close()
}
