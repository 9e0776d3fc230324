// Package readahead reads a connection ahead of its user into a bounded
// buffer. The Cumulocity agent uses it to keep what one side of a tunnel
// sends while the other side is still being set up, and the CCCP proxy to
// hold (or throw away) what a device or client sends while its partner is
// absent, and to notice at once when either leaves.
package readahead

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"rtcp/internal/deadline"
)

// DefaultSize is the buffer size New uses when given zero.
const DefaultSize = 64 << 10

// ErrCanceled is what ReadCancel returns when its cancel channel closes.
var ErrCanceled = errors.New("readahead: read canceled")

// Conn is a net.Conn whose reads are served from a buffer that a goroutine
// of its own fills from the connection, up to a bound. Writes, addresses
// and write deadlines go to the connection; read deadlines are the Conn's
// own. A Conn has no CloseWrite, so relay.Join ends it fully when its
// partner ends: the end of either side ends both.
type Conn struct {
	net.Conn
	src io.Reader
	max int
	rd  *deadline.Deadline

	mu      sync.Mutex
	buf     []byte
	discard bool
	err     error         // the source's error, once it has failed or ended
	changed chan struct{} // closed and replaced whenever the state above changes

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	done      chan struct{} // closed when the reading goroutine has ended
}

// New starts reading c ahead into a buffer of at most size bytes (zero
// means DefaultSize); when it is full, reading stops until the user reads.
// src, if not nil, is where c's bytes come from (a bufio.Reader that holds
// some of them already); nil means c itself. Close the Conn to end the
// goroutine.
func New(c net.Conn, src io.Reader, size int) *Conn {
	if size <= 0 {
		size = DefaultSize
	}
	if src == nil {
		src = c
	}
	ra := &Conn{
		Conn:    c,
		src:     src,
		max:     size,
		rd:      deadline.New(),
		changed: make(chan struct{}),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	go ra.pump()
	return ra
}

// notify wakes everybody waiting for a change; call with mu held.
func (c *Conn) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Conn) pump() {
	defer close(c.done)
	tmp := make([]byte, min(c.max, 32<<10))
	for {
		c.mu.Lock()
		for !c.discard && len(c.buf) >= c.max {
			ch := c.changed
			c.mu.Unlock()
			select {
			case <-ch:
			case <-c.closed:
				return
			}
			c.mu.Lock()
		}
		room := len(tmp)
		if !c.discard {
			room = min(room, c.max-len(c.buf))
		}
		c.mu.Unlock()

		n, err := c.src.Read(tmp[:room])

		c.mu.Lock()
		if n > 0 && !c.discard {
			c.buf = append(c.buf, tmp[:n]...)
		}
		if err != nil {
			c.err = err
		}
		if n > 0 || err != nil {
			c.notify()
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Read reads what the connection has sent. After the connection's end it
// returns what is left in the buffer, then io.EOF (or the error that ended
// the connection); after Close, net.ErrClosed.
func (c *Conn) Read(p []byte) (int, error) { return c.ReadCancel(p, nil) }

// ReadCancel is Read that also gives up, with ErrCanceled, when cancel is
// closed.
func (c *Conn) ReadCancel(p []byte, cancel <-chan struct{}) (int, error) {
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		c.mu.Lock()
		if len(c.buf) > 0 {
			n := copy(p, c.buf)
			c.buf = c.buf[:copy(c.buf, c.buf[n:])]
			c.notify()
			c.mu.Unlock()
			return n, nil
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.closed:
			return 0, net.ErrClosed
		case <-cancel:
			return 0, ErrCanceled
		case <-c.rd.Wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// SetDiscard switches discarding on or off. While it is on, what is in
// the buffer and whatever the connection sends is thrown away, and reading
// never stops for lack of room.
func (c *Conn) SetDiscard(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.discard = on
	if on {
		c.buf = c.buf[:0]
	}
	c.notify()
}

// Buffered returns the number of bytes read ahead and not yet read.
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// Done is closed when the connection has ended or failed (or been
// closed), even if bytes are still buffered.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns the error that ended the connection (io.EOF for a clean
// end), or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits for the reading goroutine to end.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.rd.Stop()
	})
	<-c.done
	return err
}

func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}
