package rtcp

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stuckConn is a link whose writes, once stuck is set, take nothing
// until it is closed or their deadline passes: a DP that no longer
// reads it.
type stuckConn struct {
	net.Conn
	stuck   atomic.Bool
	waiting chan struct{} // a write waits: closed once
	closed  chan struct{}
	once    sync.Once
	wonce   sync.Once

	mu   sync.Mutex    // guards wd and wake
	wd   time.Time     // the write deadline
	wake chan struct{} // closed when wd changes
}

func newStuckConn(c net.Conn) *stuckConn {
	return &stuckConn{Conn: c, waiting: make(chan struct{}), closed: make(chan struct{}), wake: make(chan struct{})}
}

func (c *stuckConn) Write(p []byte) (int, error) {
	if !c.stuck.Load() {
		return c.Conn.Write(p)
	}
	c.wonce.Do(func() { close(c.waiting) })
	for {
		c.mu.Lock()
		d, wake := c.wd, c.wake
		c.mu.Unlock()
		var expired <-chan time.Time
		if !d.IsZero() {
			t := time.NewTimer(time.Until(d))
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-wake:
		}
	}
}

func (c *stuckConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stuckConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *stuckConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestYamuxAckStuckLinkClose: with keepalive off, a server whose link to
// the DP takes no more bytes as it answers an open still closes: Close
// does not wait for the Ack forever.
func TestYamuxAckStuckLinkClose(t *testing.T) {
	addr := startDP(t, nil)
	dialed := make(chan *stuckConn, 1)
	lc := &ListenConfig{Transport: TransportYamux, KeepAlive: -1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			sc := newStuckConn(c)
			select {
			case dialed <- sc: // the first link
			default: // a link dialled again, if the DP dropped it: never stuck
			}
			return sc, nil
		}}
	l, err := lc.Listen(context.Background(), addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	link := <-dialed
	defer link.Close()
	link.stuck.Store(true)

	ctx, cancel := context.WithCancel(context.Background())
	dialDone := make(chan struct{})
	go func() {
		defer close(dialDone)
		if c, err := DialContext(ctx, addr, "printer-7"); err == nil {
			c.Close()
		}
	}()
	defer func() {
		cancel()
		<-dialDone
	}()
	<-link.waiting // the server's answer to the open waits for the link

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		l.Close()
	}()
	select {
	case <-closed:
	case <-time.After(2 * defaultHandshakeTimeout):
		link.Close() // lets Close return, and the test end
		<-closed
		t.Fatalf("Listener.Close waited %v for an Ack the stuck link would not take", 2*defaultHandshakeTimeout)
	}
}
