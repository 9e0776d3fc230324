package cccp

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"rtcp/internal/readahead"
)

// A view is one session's use of a device's or client's connection, which
// may outlive the session (a persistent proxy keeps both parties while the
// other comes and goes). The DP's relay joins two views; closing a view
// (the relay does when either side ends) ends the session, not the
// connection: reads and writes in progress return net.ErrClosed, and the
// connection goes back to its owner. A view has no CloseWrite, so the
// relay closes it fully when the other side ends.
type view struct {
	ra      *readahead.Conn // reads: the connection read ahead
	conn    net.Conn        // writes and addresses
	count   *atomic.Int64   // bytes both ways, if not nil
	onClose func()

	closed chan struct{}
	once   sync.Once

	wmu      sync.Mutex
	writing  bool
	isClosed bool
}

func newView(ra *readahead.Conn, conn net.Conn, count *atomic.Int64, onClose func()) *view {
	return &view{ra: ra, conn: conn, count: count, onClose: onClose, closed: make(chan struct{})}
}

// aLongTimeAgo is a deadline in the past, to interrupt a blocked Write.
var aLongTimeAgo = time.Unix(1, 0)

func (v *view) Read(b []byte) (int, error) {
	n, err := v.ra.ReadCancel(b, v.closed)
	if errors.Is(err, readahead.ErrCanceled) {
		err = net.ErrClosed
	}
	if n > 0 && v.count != nil {
		v.count.Add(int64(n))
	}
	return n, err
}

func (v *view) Write(b []byte) (int, error) {
	v.wmu.Lock()
	if v.isClosed {
		v.wmu.Unlock()
		return 0, net.ErrClosed
	}
	v.writing = true
	v.wmu.Unlock()

	n, err := v.conn.Write(b)

	v.wmu.Lock()
	v.writing = false
	if v.isClosed {
		// Close cut this Write short; the connection lives on.
		v.conn.SetWriteDeadline(time.Time{})
		if err != nil {
			err = net.ErrClosed
		}
	}
	v.wmu.Unlock()
	if n > 0 && v.count != nil {
		v.count.Add(int64(n))
	}
	return n, err
}

// Close ends the session on this connection. It does not close the
// connection.
func (v *view) Close() error {
	v.once.Do(func() {
		v.wmu.Lock()
		v.isClosed = true
		close(v.closed)
		if v.writing {
			v.conn.SetWriteDeadline(aLongTimeAgo)
		}
		v.wmu.Unlock()
		if v.onClose != nil {
			v.onClose()
		}
	})
	return nil
}

func (v *view) LocalAddr() net.Addr  { return v.conn.LocalAddr() }
func (v *view) RemoteAddr() net.Addr { return v.conn.RemoteAddr() }
func (v *view) SetDeadline(t time.Time) error {
	v.ra.SetReadDeadline(t)
	return v.conn.SetWriteDeadline(t)
}
func (v *view) SetReadDeadline(t time.Time) error  { return v.ra.SetReadDeadline(t) }
func (v *view) SetWriteDeadline(t time.Time) error { return v.conn.SetWriteDeadline(t) }
