// Package readahead reads a connection ahead of its user into a bounded
// buffer. The Cumulocity agent uses it to keep what one side of a tunnel
// sends while the other side is still being set up, and the CCCP proxy to
// keep (or throw away) what a device or client sends while its partner is
// absent, and to notice at once when either leaves.
//
// A Conn whose buffer is full stops reading (Hold), which is TCP's own
// backpressure but also hides the connection's end behind the bytes not
// read: a peer that sends more than the bound and closes is never seen to
// close. A connection that nobody reads yet is therefore read in Limit
// mode, where reading never stops: its end is seen at once, and a byte
// beyond the bound ends it with ErrOverflow.
package readahead

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"rtcp/internal/deadline"
	"rtcp/internal/tcpreset"
)

// DefaultSize is the buffer size New uses when given zero.
const DefaultSize = 64 << 10

var (
	// ErrCanceled is what ReadCancel returns when its cancel channel
	// closes.
	ErrCanceled = errors.New("readahead: read canceled")

	// ErrOverflow ends a Conn in Limit mode whose peer sent more than the
	// buffer holds: what the buffer holds can still be read, then Read
	// returns ErrOverflow.
	ErrOverflow = errors.New("readahead: the peer sent more than the read-ahead buffer holds while nobody was reading")
)

// A Mode says what a Conn does with what the connection sends.
type Mode int

const (
	// Hold keeps what arrives, up to the bound; when the buffer is full,
	// reading stops until the user reads. It is the mode of a new Conn,
	// for a connection that is being read: the reader's pace holds the
	// peer back, and the connection's end is seen once the reader has
	// caught up.
	Hold Mode = iota

	// Discard throws away what is in the buffer and whatever arrives;
	// reading never stops, so the connection's end is seen at once.
	Discard

	// Limit keeps what arrives, up to the bound, and never stops reading:
	// with the buffer full it still reads, to see the connection's end at
	// once, and a byte beyond the bound ends the Conn with ErrOverflow
	// (that byte is lost). It is for a connection that nobody reads yet,
	// which must neither hold on to the peer nor hide its end.
	Limit
)

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
	mode    Mode
	err     error         // the source's error, once it has failed or ended
	changed chan struct{} // closed and replaced whenever the state above changes

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	done      chan struct{} // closed when the reading goroutine has ended
}

// New starts reading c ahead into a buffer of at most size bytes (zero
// means DefaultSize), in Hold mode: when it is full, reading stops until
// the user reads.
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
	// tmp is never larger than the bound, so that a read sized while
	// discarding still fits an empty buffer if the mode has changed since.
	tmp := make([]byte, min(c.max, 32<<10))
	for {
		c.mu.Lock()
		for c.mode == Hold && len(c.buf) >= c.max {
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
		if c.mode != Discard {
			// In Limit mode a full buffer still reads one byte: the
			// connection's end, or a byte too many.
			room = max(1, min(room, c.max-len(c.buf)))
		}
		c.mu.Unlock()

		n, err := c.src.Read(tmp[:room])

		c.mu.Lock()
		if n > 0 {
			switch {
			case c.mode == Discard:
			case c.mode == Limit && len(c.buf)+n > c.max:
				err = ErrOverflow
			default:
				// In Hold mode this may pass the bound by the one byte
				// read in Limit mode.
				c.buf = append(c.buf, tmp[:n]...)
			}
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

// SetMode sets what the Conn does with what the connection sends from
// now on. Switching to Discard also throws away what is in the buffer.
func (c *Conn) SetMode(m Mode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mode = m
	if m == Discard {
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
// closed, or overflowed in Limit mode), even if bytes are still buffered.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns the error that ended the connection (io.EOF for a clean
// end, ErrOverflow for too many bytes in Limit mode), or nil while it is
// open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Abort ends the connection so that its peer sees an error rather than a
// clean end, as a relay ends a connection it cuts (relay.Aborter): the
// connection's own Abort (a WebSocket's, an rtcp stream's), else a reset
// of the TCP connection under it (tcpreset.Reset); then Close.
func (c *Conn) Abort(err error) {
	if a, ok := c.Conn.(interface{ Abort(error) }); ok {
		a.Abort(err)
	} else {
		tcpreset.Reset(c.Conn)
	}
	c.Close()
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
