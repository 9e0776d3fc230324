package rtcp

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"rtcp/internal/tcpreset"
)

// A ConnBudget bounds the connections that the doors of a program hold
// open together - the listeners of a DiscoverPoint, of its port mode, of
// the HTTP servers and the seed doors beside it - so that a flood at one
// door cannot take the file descriptors that the others need. Make one
// Door for each, and wrap its listeners with Door.Listener.
//
// Half of Max is split between the doors in equal parts (a door with a
// smaller cap of its own gets its cap), and each part is guaranteed: a
// door below its part always gets its connection while the process is
// below Max. The rest goes to whichever door asks first. A connection
// over a bound is refused: accepted and closed at once with a TCP reset,
// so its peer learns it at once and the listener's queue does not fill
// with connections that nobody serves.
//
// The zero value is ready to use, with Max from DefaultConnBudget. Make
// the doors before they serve: a door made later takes its part only as
// the others' borrowed connections end.
type ConnBudget struct {
	// Max is the most connections the doors hold at once, all together.
	// Zero means DefaultConnBudget().
	Max int

	// Logger receives a warning when a door starts refusing connections
	// and a line when it admits them again. Nil is silent.
	Logger *slog.Logger

	mu    sync.Mutex
	max   int // Max, or its default, once a door is made
	open  int
	doors []*Door
}

// DefaultConnBudget is the Max of a ConnBudget that does not set one:
// the number of files the process may open (RLIMIT_NOFILE, whose soft
// limit Go raises to the hard one at start), less a reserve of a tenth,
// and at least 64, for what else the program opens: files, listeners,
// its own dials, etcd. Where the system has no such limit it is 4096.
func DefaultConnBudget() int {
	n := openFileLimit()
	if n <= 0 {
		return 4096
	}
	n = min(n, 1<<20)
	if reserve := max(64, n/10); n > 2*reserve {
		return n - reserve
	}
	return max(n/2, 1)
}

// A Door is one door of a ConnBudget: the listeners of one server, whose
// connections are counted and bounded together.
type Door struct {
	b       *ConnBudget
	name    string
	max     int
	open    int  // guarded by b.mu
	full    bool // refusing, for the log; guarded by b.mu
	refused atomic.Uint64
}

// Door makes a door of b called name (for logs and DoorStats), that holds
// at most max connections at once (zero: no cap of its own; it is then
// bounded by its part of the budget and what is left to share).
func (b *ConnBudget) Door(name string, max int) *Door {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	d := &Door{b: b, name: name, max: max}
	b.doors = append(b.doors, d)
	return d
}

func (b *ConnBudget) initLocked() {
	if b.max == 0 {
		b.max = b.Max
		if b.max <= 0 {
			b.max = DefaultConnBudget()
		}
	}
}

// shareLocked returns a door's guaranteed part and what the doors may
// borrow beyond their parts, all together.
func (b *ConnBudget) shareLocked() (share, pool int) {
	share = b.max / (2 * len(b.doors))
	pool = b.max
	for _, d := range b.doors {
		pool -= d.partLocked(share)
	}
	return share, pool
}

// partLocked is d's guaranteed part, given the equal share.
func (d *Door) partLocked(share int) int {
	if d.max > 0 {
		return min(share, d.max)
	}
	return share
}

// take counts a new connection at d, or reports that a bound refuses it.
func (d *Door) take() bool {
	b := d.b
	b.mu.Lock()
	ok := b.open < b.max && (d.max <= 0 || d.open < d.max)
	if ok {
		share, pool := b.shareLocked()
		if d.open >= d.partLocked(share) {
			borrowed := 0
			for _, o := range b.doors {
				borrowed += max(0, o.open-o.partLocked(share))
			}
			ok = borrowed < pool
		}
	}
	was := d.full
	d.full = !ok
	if ok {
		d.open++
		b.open++
	}
	open, total := d.open, b.open
	b.mu.Unlock()

	if b.Logger != nil && was != !ok {
		if ok {
			b.Logger.Info("rtcp: door admits connections again", "door", d.name, "open", open, "refused_total", d.refused.Load())
		} else {
			b.Logger.Warn("rtcp: door full; refusing connections with a reset until some end (see -max-conns)",
				"door", d.name, "open", open, "door_max", d.max, "open_all_doors", total, "budget", b.max)
		}
	}
	if !ok {
		d.refused.Add(1)
	}
	return ok
}

func (d *Door) release() {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	d.open--
	d.b.open--
}

// Listener returns l as a listener of d: each connection it accepts
// counts against d and its budget until it is closed, and one over a
// bound is refused. Closing it closes l.
func (d *Door) Listener(l net.Listener) *DoorListener {
	return &DoorListener{l: l, d: d}
}

// A DoorListener is a listener of a Door.
type DoorListener struct {
	l net.Listener
	d *Door
}

var _ net.Listener = (*DoorListener)(nil)

// Accept waits for a connection that the door's bounds admit, refusing
// those over them, and returns it.
func (l *DoorListener) Accept() (net.Conn, error) {
	for {
		c, err := l.l.Accept()
		if err != nil {
			return nil, err
		}
		if !l.d.take() {
			tcpreset.Reset(c)
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			return &budgetTCPConn{TCPConn: tc, d: l.d}, nil
		}
		return &budgetConn{Conn: c, d: l.d}, nil
	}
}

// Close closes the listener under l.
func (l *DoorListener) Close() error { return l.l.Close() }

// Addr returns the address of the listener under l.
func (l *DoorListener) Addr() net.Addr { return l.l.Addr() }

// budgetConn is a connection a door admitted: closing it gives its place
// back.
type budgetConn struct {
	net.Conn
	d    *Door
	once sync.Once
}

func (c *budgetConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.d.release)
	return err
}

// budgetTCPConn is budgetConn for TCP. It keeps every method of the
// TCPConn (SetLinger, CloseWrite, ReadFrom), and Unwrap lets the relay
// splice the TCP connection itself.
type budgetTCPConn struct {
	*net.TCPConn
	d    *Door
	once sync.Once
}

func (c *budgetTCPConn) Unwrap() *net.TCPConn { return c.TCPConn }

// RawTCP lets internal/sockio read and write the TCPConn itself: c's Read
// and Write are its.
func (c *budgetTCPConn) RawTCP() *net.TCPConn { return c.TCPConn }

func (c *budgetTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.d.release)
	return err
}

// BudgetStats is a snapshot of a ConnBudget, for monitoring
// (rtcp/dpmetrics serves it).
type BudgetStats struct {
	Max   int // the bound over all doors
	Open  int // connections open at all doors
	Doors []DoorStats
}

// DoorStats is a snapshot of one Door.
type DoorStats struct {
	Name    string
	Max     int    // the door's own cap; 0 if none
	Part    int    // connections guaranteed to the door
	Open    int    // connections open now
	Refused uint64 // connections refused since the door was made
}

// Stats returns a snapshot of b.
func (b *ConnBudget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	st := BudgetStats{Max: b.max, Open: b.open}
	share := 0
	if len(b.doors) > 0 {
		share, _ = b.shareLocked()
	}
	for _, d := range b.doors {
		st.Doors = append(st.Doors, DoorStats{Name: d.name, Max: d.max, Part: d.partLocked(share), Open: d.open, Refused: d.refused.Load()})
	}
	return st
}
