package relay

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"rtcp/internal/sockio"
	"rtcp/internal/tcpreset"
)

// A Loop relays the small messages of many sessions between TCP
// connections on one goroutine of its own: Loop.Join. The goroutine
// keeps its thread (runtime.LockOSThread) and waits in epoll_wait on an
// epoll set of its own, in which the sessions' sockets are level-
// triggered; for each socket that is ready it reads once into its one
// buffer and writes to the socket's peer. The sockets leave Go's
// netpoller while the loop has them (Join duplicates each descriptor
// and closes the *net.TCPConn, whose Close takes it out of the poller;
// the duplicate keeps the socket). A request then costs no wake-up of a
// goroutine, no scheduler round, no read that finds nothing: on
// redis-benchmark through two chained relays, some 27 % less CPU per
// request than Join's goroutine per direction (docs/performance.md).
//
// One session delays the others by one buffer (smallSize) at most: each
// socket is read once per readiness. A session whose read fills the
// buffer (a burst) leaves the loop for good: Join's goroutine and one
// more carry it on as Join does (copyTCP: bursts spliced).
//
// While a session is in the loop, or after it left it, its connections'
// deadlines, Close and SetLinger reach nothing: their sockets are the
// loop's, then connections of Join's own. Its callers set no deadline
// on them during a Join, and a Loop's owner ends the sessions it holds
// with Loop.Close.
type Loop struct {
	// mu guards started, closed, err, the descriptors while they are
	// made and closed, queue, cuts and handed (and the cutErr and conns
	// of the sessions in them): Join's hand-over of a session and
	// JoinContext's cut of one against Close, and the loop's taking of
	// them. It is the Loop's only lock, taken under no other, and
	// nothing else is locked or waited for under it (a write to the
	// eventfd does not block).
	mu      sync.Mutex
	started bool                      // the goroutine runs (or ran)
	closed  bool                      // Close was called, or the loop failed
	err     error                     // why the loop could not start: Join is the package's
	ep      int                       // the epoll set
	efd     int                       // an eventfd in it: Join's and Close's wake-up
	queue   []*loopSession            // handed over, not yet in the epoll set
	cuts    []*loopSession            // to cut (JoinContext), in the loop or on its way in
	handed  map[*loopSession]struct{} // left the loop after a burst: Close cuts them too
	stopped chan struct{}             // closed when the loop's goroutine is done

	held atomic.Int64 // sessions taken by Join, not yet returned (Len)

	// The loop goroutine's alone.
	sides []*loopSide // by descriptor
	buf   []byte
}

// ErrLoopClosed is the error of a Join whose session a Loop's Close cut.
var ErrLoopClosed = errors.New("relay: the relay loop was closed under the session")

// A loopSession is a Join's session in the loop: its sides, a and b.
type loopSession struct {
	side  [2]loopSide
	count func(aToB bool, n int)
	done  chan struct{} // closed by the loop when the session leaves it

	// Set by the loop before done is closed.
	st      Stats
	err     error
	handOff bool // a burst: the session goes on in Join's goroutine

	// Guarded by Loop.mu: why the session was cut from outside (Close,
	// JoinContext's ctx), and after a burst the connections it goes on
	// with.
	cutErr error
	conns  [2]*net.TCPConn
}

// A loopSide is one side of a loopSession: its socket, and the
// direction into it.
type loopSide struct {
	s      *loopSession
	i      int    // 0: a, 1: b
	fd     int    // the loop's duplicate of its socket
	reg    bool   // in the epoll set,
	events uint32 // for these events (a reset is reported with none)
	parked bool   // out of it after a clean hang-up, until it waits again
	eof    bool   // its end was read (and passed on)
	fin    bool   // its writing was shut (its peer's end passed on)
	pend   []byte // bytes of its peer's not yet written to it
	pendB  *[]byte
}

// NewLoop starts a Loop, which a Loop's zero value does at its first
// Join of two TCP connections. Close stops it.
func NewLoop() (*Loop, error) {
	l := new(Loop)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.startLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// ready starts the loop if it has not started, and reports whether it
// takes sessions: not after Close, nor where it could not start.
func (l *Loop) ready() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.err != nil {
		return false
	}
	if !l.started {
		l.err = l.startLocked()
	}
	return l.err == nil
}

// startLocked makes the epoll set and the eventfd, and starts the
// loop's goroutine; l.mu held.
func (l *Loop) startLocked() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		unix.Close(ep)
		return os.NewSyscallError("epoll_ctl", err)
	}
	l.ep, l.efd, l.started = ep, efd, true
	l.stopped = make(chan struct{})
	l.handed = make(map[*loopSession]struct{})
	l.buf = make([]byte, smallSize)
	go l.run()
	return nil
}

// Join is the package's Join, run by the loop where Join would copy
// both directions between two TCP connections (tcpreset.Of of both,
// their descriptors not blocking, neither an asyncPushSource), with the
// bytes read ahead of them (Buffered) written first. Otherwise, on a
// nil or closed Loop, or one that could not start, it is the package's
// Join. The caller's goroutine waits for the session to leave the loop;
// a session cut by the Loop's Close returns ErrLoopClosed. count is
// called on the loop's goroutine while the session is in the loop: a
// count that blocks holds every session. At the end Join closes a and b
// (or cuts them: Abort, a reset) as Join does, for their books: their
// sockets, the loop's since, are closed already. The loop passes an end
// on with a shutdown of the socket, not the wrapper's CloseWrite.
func (l *Loop) Join(a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	if l == nil || !Loopable(a, b) {
		return JoinScanned(a, b, count, nil, nil)
	}
	return l.join(nil, a, b, count)
}

// JoinContext is Join, with ctx's end cutting a session that the loop
// took (both peers see a reset; Join returns context.Cause(ctx)), where a
// Close of a or b reaches nothing. A session that the loop did not take
// is the package's Join's, which ctx does not end: the caller's Close of
// a or b does, as ever.
func (l *Loop) JoinContext(ctx context.Context, a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	if l == nil || !Loopable(a, b) {
		return JoinScanned(a, b, count, nil, nil)
	}
	return l.join(ctx, a, b, count)
}

// Loopable reports whether a Loop may take a and b, without taking
// anything from them: each is a TCP connection (tcpreset.Of) or holds
// bytes read ahead of one (Buffered, which may be one after), and
// neither is a stream that pushes its own bytes (asyncSource). The
// sessions it rules out (a stream's) are the package's Join's: a caller
// that joins many of them calls Join itself for those, so that no frame
// of the Loop's sits under an idle session's wait, where one more can
// keep the goroutine's stack at twice the size (docs/performance.md:
// through the Loop, json's idle session at the DP took 13.5 KiB, not
// 9.4).
func Loopable(a, b net.Conn) bool {
	return tcpOrBuffered(a) && tcpOrBuffered(b) && asyncSource(a, nil) == nil && asyncSource(b, nil) == nil
}

func tcpOrBuffered(c net.Conn) bool {
	if _, ok := c.(Buffered); ok {
		return true
	}
	return tcpreset.Of(c) != nil
}

func (l *Loop) join(ctx context.Context, a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	if !l.ready() {
		return JoinScanned(a, b, count, nil, nil)
	}
	aheadA, aheadB := takeAhead(a, nil), takeAhead(b, nil)
	ta, tb := tcpreset.Of(a), tcpreset.Of(b)
	fa, fb := -1, -1
	if ta != nil && tb != nil {
		fa, _ = dupSocket(ta)
		fb, _ = dupSocket(tb)
	}
	if fa < 0 || fb < 0 {
		// Not two TCP connections after all, or no descriptor to be
		// had: the package's Join, given back the bytes taken ahead.
		closeFD(fa)
		closeFD(fb)
		return JoinScanned(giveBack(a, aheadA), giveBack(b, aheadB), count, nil, nil)
	}
	l.held.Add(1)
	defer l.held.Add(-1)
	s := &loopSession{count: count, done: make(chan struct{})}
	s.side[0] = loopSide{s: s, i: 0, fd: fa, pend: nonEmpty(aheadB)}
	s.side[1] = loopSide{s: s, i: 1, fd: fb, pend: nonEmpty(aheadA)}
	// Out of Go's netpoller; the duplicates keep the sockets.
	ta.Close()
	tb.Close()
	if ctx != nil && ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { l.cutOne(s, context.Cause(ctx)) })
		defer stop()
	}
	if err := l.add(s); err != nil {
		// Closed, or cut, before the loop took it: no one else would
		// end it now (the callers' Close of a and b reaches nothing).
		s.putPend()
		resetFD(fa)
		resetFD(fb)
		cut(a, err)
		cut(b, err)
		return s.st, err
	}
	<-s.done
	if s.handOff {
		return l.handOff(a, b, s)
	}
	if s.err != nil {
		cut(a, s.err)
		cut(b, s.err)
	}
	a.Close()
	b.Close()
	return s.st, s.err
}

// Len returns how many sessions the loop holds: taken by a Join that has
// not returned, in the loop or gone on after a burst.
func (l *Loop) Len() int {
	if l == nil {
		return 0
	}
	return int(l.held.Load())
}

// giveBack returns c with the bytes that Join took ahead of it (Buffered)
// to be taken again, by JoinScanned: c itself if there are none.
func giveBack(c net.Conn, ahead []byte) net.Conn {
	if len(ahead) == 0 {
		return c
	}
	return &givenBack{Conn: c, ahead: ahead}
}

// givenBack is a connection whose bytes read ahead were taken
// (TakeBuffered) and are offered again: it is its Conn in every other
// way (the TCP connection it is, its half-close, its cut, its layers).
// Unlike a Buffered connection of rtcp's, its Unwrap gives the TCP
// connection while the bytes still wait: only JoinScanned sees it, and
// takes them before it copies anything.
type givenBack struct {
	net.Conn
	ahead []byte
}

func (c *givenBack) TakeBuffered() []byte {
	b := c.ahead
	c.ahead = nil
	return b
}

func (c *givenBack) Unwrap() *net.TCPConn { return tcpreset.Of(c.Conn) }
func (c *givenBack) NetConn() net.Conn    { return c.Conn }
func (c *givenBack) Abort(err error)      { cut(c.Conn, err) }

func (c *givenBack) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	c.Conn.Close()
	return nil
}

func nonEmpty(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return p
}

// dupSocket returns a duplicate of tc's descriptor, if it does not
// block (sockio.NonBlocking: the duplicate shares the mode); else -1.
func dupSocket(tc *net.TCPConn) (int, bool) {
	rc, err := tc.SyscallConn()
	if err != nil || !sockio.NonBlocking(rc) {
		return -1, false
	}
	fd := -1
	rc.Control(func(s uintptr) {
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	})
	return fd, fd >= 0
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// add hands s to the loop; the error if the Loop was closed, or s cut,
// first.
func (l *Loop) add(s *loopSession) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrLoopClosed
	case s.cutErr != nil:
		return s.cutErr
	}
	l.queue = append(l.queue, s)
	if len(l.queue)+len(l.cuts) == 1 {
		l.wake()
	}
	return nil
}

// cutOne cuts s from outside with err (JoinContext): in the loop, where
// the loop takes it as a command; after a burst, with a reset of its
// connections, as Close does, while its Join relays them (l.handed):
// not once Join has found it not cut, and closes them cleanly. The
// first cut counts.
func (l *Loop) cutOne(s *loopSession, err error) {
	l.mu.Lock()
	if s.cutErr != nil {
		l.mu.Unlock()
		return
	}
	conns := s.conns
	if _, relayed := l.handed[s]; conns[0] != nil && !relayed {
		l.mu.Unlock()
		return
	}
	s.cutErr = err
	if conns[0] == nil && l.started && !l.closed {
		l.cuts = append(l.cuts, s)
		if len(l.queue)+len(l.cuts) == 1 {
			l.wake()
		}
	}
	l.mu.Unlock()
	if conns[0] != nil {
		resetConns(conns)
	}
}

// resetConns closes a session's connections after a burst with a
// reset, both set before either closes: a copy that finds one closed
// under it closes the other (finish).
func resetConns(conns [2]*net.TCPConn) {
	tcpreset.SetReset(conns[0], true)
	tcpreset.SetReset(conns[1], true)
	conns[0].Close()
	conns[1].Close()
}

// wake wakes the loop; l.mu held, so that the loop has not closed the
// eventfd.
func (l *Loop) wake() {
	one := [8]byte{1}
	unix.Write(l.efd, one[:])
}

// Close cuts every session in the loop, and every session that left it
// after a burst (its Join returns ErrLoopClosed, and both peers see a
// reset), stops the loop and returns when it is done. A Join after
// Close is the package's Join. A nil Loop's Close does nothing.
func (l *Loop) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed || !l.started {
		l.closed = true
		stopped := l.stopped
		l.mu.Unlock()
		if stopped != nil {
			<-stopped
		}
		return nil
	}
	l.closed = true
	l.wake()
	var handed [][2]*net.TCPConn
	for s := range l.handed {
		if s.cutErr == nil {
			s.cutErr = ErrLoopClosed
			handed = append(handed, s.conns)
		}
	}
	l.mu.Unlock()
	for _, conns := range handed {
		resetConns(conns)
	}
	<-l.stopped
	return nil
}

// run is the loop's goroutine.
func (l *Loop) run() {
	runtime.LockOSThread() // for good: the thread ends with the goroutine
	defer close(l.stopped)
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(l.ep, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Cannot happen with a valid set and buffer; if it did,
			// no session could go on.
			l.stop(os.NewSyscallError("epoll_wait", err))
			return
		}
		woken := false
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == l.efd {
				woken = true
				continue
			}
			if fd < len(l.sides) && l.sides[fd] != nil {
				l.handle(l.sides[fd], ev.Events)
			}
		}
		if woken && l.commands() {
			return
		}
	}
}

// commands takes the sessions handed over since the last wake-up into
// the epoll set, or stops the loop if it is closed (true).
func (l *Loop) commands() bool {
	var b [8]byte
	unix.Read(l.efd, b[:])
	l.mu.Lock()
	queue, closed, cuts := l.queue, l.closed, l.cuts
	l.queue, l.cuts = nil, nil
	errs := make([]error, len(cuts))
	for i, s := range cuts {
		errs[i] = s.cutErr
	}
	l.mu.Unlock()
	for _, s := range queue {
		for i := range s.side {
			x := &s.side[i]
			for x.fd >= len(l.sides) {
				l.sides = append(l.sides, make([]*loopSide, len(l.sides)+64)...)
			}
			l.sides[x.fd] = x
		}
		if closed {
			l.cut(s, false, false, ErrLoopClosed)
			continue
		}
		if err := l.update(&s.side[0]); err != nil {
			l.cut(s, true, false, err)
		} else if err := l.update(&s.side[1]); err != nil {
			l.cut(s, false, false, err)
		}
	}
	for i, s := range cuts {
		// Unless it has left the loop since: ended, or gone on after a
		// burst, where its Join cuts it (handOff).
		if x := &s.side[0]; x.fd < len(l.sides) && l.sides[x.fd] == x {
			l.cut(s, false, false, errs[i])
		}
	}
	if closed {
		l.stop(ErrLoopClosed)
	}
	return closed
}

// stop cuts every session in the loop with err, and closes the epoll
// set and the eventfd.
func (l *Loop) stop(err error) {
	for _, x := range l.sides {
		if x != nil && x.i == 0 {
			l.cut(x.s, false, false, err)
		}
	}
	l.mu.Lock()
	l.closed = true // a Join meanwhile is cut (add), a later one not taken (ready)
	queue := l.queue
	l.queue, l.cuts = nil, nil
	unix.Close(l.efd)
	l.mu.Unlock()
	for _, s := range queue {
		l.cut(s, false, false, err)
	}
	unix.Close(l.ep)
}

// want returns the events x waits for: its bytes, unless its peer holds
// some of them still; room, while it holds its peer's.
func (x *loopSide) want() uint32 {
	var ev uint32
	if !x.eof && x.s.side[1-x.i].pend == nil {
		ev |= unix.EPOLLIN
	}
	if x.pend != nil {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// update sets the events x waits for in the epoll set. A side that
// waits for none stays in it: epoll reports its error or hang-up still,
// so that a reset of a source that is not read while its peer takes
// nothing ends the session at once (what resetWatch does for copyTCP).
// Only a clean hang-up parks it out of the set (park), until it waits
// for something again.
func (l *Loop) update(x *loopSide) error {
	want := x.want()
	switch {
	case x.reg && want == x.events:
		return nil
	case !x.reg && x.parked && want == 0:
		return nil
	}
	op := unix.EPOLL_CTL_MOD
	if !x.reg {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: want, Fd: int32(x.fd)}
	if err := unix.EpollCtl(l.ep, op, x.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	x.reg, x.events, x.parked = true, want, false
	return nil
}

// park takes x, which waits for nothing, out of the epoll set after a
// hang-up that is no error (both directions of its socket shut): level-
// triggered, epoll would report it again at every wait.
func (l *Loop) park(x *loopSide) {
	if x.reg {
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, x.fd, nil)
	}
	x.reg, x.events, x.parked = false, 0, true
}

// handle acts on the events of x's socket: writes what it holds of its
// peer's if it has room, then reads it once. An error or a hang-up is
// reported whatever x waits for: the write or the read takes it; if x
// waits for neither, its SO_ERROR, or its state (a reset reported to an
// earlier call), tells a cut; else it is a clean hang-up, and x parks.
func (l *Loop) handle(x *loopSide, events uint32) {
	s := x.s
	const trouble = unix.EPOLLERR | unix.EPOLLHUP
	acted := false
	if x.pend != nil && events&(unix.EPOLLOUT|trouble) != 0 {
		acted = true
		if !l.flush(x) {
			return
		}
	}
	if !x.eof && s.side[1-x.i].pend == nil && events&(unix.EPOLLIN|unix.EPOLLRDHUP|trouble) != 0 {
		l.read(x)
		return
	}
	if acted || events&trouble == 0 {
		return
	}
	// x is a source held back (its peer holds its bytes), or a
	// destination with nothing to write (its own end passed on).
	dir, wfail := x.i == 0, false
	if x.eof {
		dir, wfail = x.i == 1, true
	}
	if e, err := unix.GetsockoptInt(x.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
		err := error(os.NewSyscallError("read", syscall.Errno(e)))
		if wfail {
			// Its peer's bytes, written, did not get through: the
			// error a write of them would have had.
			err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.Errno(e))}
		}
		l.cut(s, dir, wfail, err)
		return
	}
	if !x.fin && tcpreset.WasResetFD(x.fd) {
		l.cut(s, dir, wfail, tcpreset.ErrReset)
		return
	}
	l.park(x)
}

// flush writes what x holds of its peer's; false if the session has
// left the loop.
func (l *Loop) flush(x *loopSide) bool {
	s, dir := x.s, x.i == 1 // x's bytes came from its peer
	w, err := writeFD(x.fd, x.pend)
	if w > 0 {
		s.moved(dir, w)
		x.pend = x.pend[w:]
	}
	if err != nil {
		l.cut(s, dir, true, err)
		return false
	}
	if len(x.pend) > 0 {
		return true
	}
	x.pend = nil
	if x.pendB != nil {
		smallPool.Put(x.pendB)
		x.pendB = nil
	}
	peer := &s.side[1-x.i]
	if err := l.update(x); err != nil {
		l.cut(s, dir, true, err)
		return false
	}
	if err := l.update(peer); err != nil {
		l.cut(s, dir, false, err)
		return false
	}
	return true
}

// read reads x once and writes what came to its peer; what the peer
// does not take waits in it (pend) while x is not read. A read that
// fills the buffer hands the session off (handOff).
func (l *Loop) read(x *loopSide) {
	s, dir := x.s, x.i == 0
	peer := &s.side[1-x.i]
	var (
		n   int
		err error
	)
	for {
		n, err = sockio.Read(x.fd, l.buf)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.EAGAIN:
		return
	case err != nil:
		// Linux reports a reset to one call only: this one.
		l.cut(s, dir, false, os.NewSyscallError("read", err))
		return
	case n == 0:
		l.end(x)
		return
	}
	w, err := writeFD(peer.fd, l.buf[:n])
	if w > 0 {
		s.moved(dir, w)
	}
	if err != nil {
		l.cut(s, dir, true, err)
		return
	}
	if w < n {
		bp := smallPool.Get().(*[]byte)
		peer.pendB, peer.pend = bp, (*bp)[:copy(*bp, l.buf[w:n])]
	}
	if n == len(l.buf) {
		l.leave(s)
		return
	}
	if w < n {
		if err := l.update(x); err != nil {
			l.cut(s, dir, false, err)
		} else if err := l.update(peer); err != nil {
			l.cut(s, dir, true, err)
		}
	}
}

// end passes x's end on, after its read found one: its peer's writing
// is shut. Unless x was reset: Linux may have reported that to a write
// of x, and the read after sees a bare end; x's state tells, as long as
// its own writing was not shut (see package tcpreset).
func (l *Loop) end(x *loopSide) {
	s, dir := x.s, x.i == 0
	peer := &s.side[1-x.i]
	if !x.fin && tcpreset.WasResetFD(x.fd) {
		l.cut(s, dir, false, tcpreset.ErrReset)
		return
	}
	x.eof = true
	if err := unix.Shutdown(peer.fd, unix.SHUT_WR); err != nil {
		// The peer's socket cannot pass the end on: it was reset, or
		// is no longer connected. Not a clean end.
		l.cut(s, dir, true, os.NewSyscallError("shutdown", err))
		return
	}
	peer.fin = true
	if peer.eof {
		l.endClean(s)
		return
	}
	if err := l.update(x); err != nil {
		l.cut(s, dir, false, err)
	}
}

// moved counts n bytes written in direction dir.
func (s *loopSession) moved(dir bool, n int) {
	if dir {
		s.st.AtoB += int64(n)
	} else {
		s.st.BtoA += int64(n)
	}
	if s.count != nil {
		s.count(dir, n)
	}
}

// remove takes s's sides out of the epoll set and the loop's books.
func (l *Loop) remove(s *loopSession) {
	for i := range s.side {
		x := &s.side[i]
		if x.reg {
			unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, x.fd, nil)
			x.reg = false
		}
		if x.fd < len(l.sides) && l.sides[x.fd] == x {
			l.sides[x.fd] = nil
		}
	}
}

// endClean ends s after both ends crossed: its sockets close with a FIN,
// even one set to reset if cut (SO_LINGER 0), so that the kernel
// delivers what is still queued.
func (l *Loop) endClean(s *loopSession) {
	l.remove(s)
	for i := range s.side {
		x := &s.side[i]
		unix.SetsockoptLinger(x.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{})
		unix.Close(x.fd)
	}
	close(s.done)
}

// cut ends s with err, both sockets with a reset; dir and wfail say
// which direction failed, and whether writing its destination did.
func (l *Loop) cut(s *loopSession, dir, wfail bool, err error) {
	l.remove(s)
	for i := range s.side {
		x := &s.side[i]
		resetFD(x.fd)
		if x.pendB != nil {
			smallPool.Put(x.pendB)
			x.pendB = nil
		}
		x.pend = nil
	}
	s.err, s.st.FailedAtoB, s.st.FailedWrite = err, dir, wfail
	close(s.done)
}

// leave hands s, after a burst, to its Join's goroutine (handOff),
// with its sockets and what they hold.
func (l *Loop) leave(s *loopSession) {
	l.remove(s)
	s.handOff = true
	close(s.done)
}

// resetFD closes fd with a reset.
func resetFD(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// writeFD writes what fd takes of p now: 0 and no error when it takes
// nothing (EAGAIN); errors as sockio.TryWrite's.
func writeFD(fd int, p []byte) (int, error) {
	for {
		n, err := sockio.Write(fd, p)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
	}
}

// handOff relays s on Join's goroutine and one more, as JoinScanned
// does between two TCP connections, from where the loop left it: its
// sockets as *net.TCPConn again (back in Go's netpoller), what a side
// holds of its peer's written first, the ends that crossed passed on.
// a and b are Join's, closed (or cut) at the end for their books.
// Close, and JoinContext's ctx, cut the session still (Loop.handed).
func (l *Loop) handOff(a, b net.Conn, s *loopSession) (Stats, error) {
	st := s.st
	ca, errA := fileConn(s.side[0].fd)
	cb, errB := fileConn(s.side[1].fd)
	err := errors.Join(errA, errB)
	if err == nil {
		l.mu.Lock()
		switch {
		case l.closed:
			err = ErrLoopClosed
		case s.cutErr != nil:
			err = s.cutErr
		default:
			s.conns = [2]*net.TCPConn{ca, cb}
			l.handed[s] = struct{}{}
		}
		l.mu.Unlock()
	}
	if err != nil {
		for _, c := range []*net.TCPConn{ca, cb} {
			if c != nil {
				tcpreset.Reset(c)
			}
		}
		s.putPend()
		cut(a, err)
		cut(b, err)
		return st, err
	}
	var (
		failed, finA, finB atomic.Bool
		errBA, errAB       error
		wfA, wfB           bool
		wg                 sync.WaitGroup
	)
	finA.Store(s.side[0].fin)
	finB.Store(s.side[1].fin)
	dir := func(dst, src *net.TCPConn, pend []byte, d bool, dstFin, srcFin *atomic.Bool) (int64, error, bool) {
		n, err, ended := writeAhead(dst, src, pend, d, s.count, &failed, dstFin)
		if ended {
			return n, err, err != nil
		}
		m, err, wf := pipePlain(dst, src, d, s.count, &failed, dstFin, srcFin)
		return n + m, err, wf
	}
	if !s.side[1].eof {
		wg.Go(func() {
			n, err, wf := dir(ca, cb, s.side[0].pend, false, &finA, &finB)
			st.BtoA += n
			errBA, wfA = err, wf
		})
	}
	if !s.side[0].eof {
		n, err, wf := dir(cb, ca, s.side[1].pend, true, &finB, &finA)
		st.AtoB += n
		errAB, wfB = err, wf
	}
	wg.Wait()
	s.putPend()
	l.mu.Lock()
	delete(l.handed, s)
	cutErr := s.cutErr
	l.mu.Unlock()
	if errAB == nil && errBA == nil && cutErr == nil {
		graceful(ca)
		graceful(cb)
	}
	ca.Close()
	cb.Close()
	err = errBA
	st.FailedAtoB, st.FailedWrite = false, errBA != nil && wfA
	if errAB != nil {
		err = errAB
		st.FailedAtoB, st.FailedWrite = true, wfB
	}
	if cutErr != nil {
		// Cut by Close or ctx: the copies may have taken the
		// connections closed under them for an end.
		err = cutErr
	}
	if err != nil {
		cut(a, err)
		cut(b, err)
	}
	a.Close()
	b.Close()
	return st, err
}

// putPend gives the buffers of what the sides held back to the pool.
func (s *loopSession) putPend() {
	for i := range s.side {
		if bp := s.side[i].pendB; bp != nil {
			smallPool.Put(bp)
			s.side[i].pendB = nil
		}
		s.side[i].pend = nil
	}
}

// fileConn returns the socket fd as a *net.TCPConn, and closes fd (the
// connection holds a duplicate): with a reset if it cannot.
func fileConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "relay")
	c, err := net.FileConn(f)
	if err != nil {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		f.Close()
		return nil, err
	}
	f.Close()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		tcpreset.Reset(c)
		return nil, errors.New("relay: a socket of the relay loop is not TCP")
	}
	return tc, nil
}
