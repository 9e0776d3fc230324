package rtcp

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"rtcp/internal/deadline"
)

// A moving session (docs/direct.md, protocol/plan5/SPEC.md "Direct
// sessions"): a brokered session that starts on the relay at
// once and moves to the direct connection when both sides' punch has
// proven it. Until a direction moves, its bytes on the relay are records:
//
//	'd' len(2, big-endian, 1..65535) bytes   data
//	'm'                                      moved: this direction's bytes go on
//	                                         on the direct connection
//	'u'                                      unframed: the punch failed; this
//	                                         direction's bytes go on on the relay,
//	                                         as they are
//	'c' count(8, big-endian)                 after 'm', at Close: the bytes this
//	                                         side wrote on the direct connection;
//	                                         the DP counts it and passes it on to
//	                                         no one
//
// A side sends 'm' only once it holds a proven direct connection, and
// nothing on the relay after 'm' but its report ('c', at Close), nor
// records after 'u'. A framed write
// copies its bytes behind the record's header (one write of the relay per
// record, not two): the framing lasts only until the punch has ended, at
// most DirectTimeout; a moved or unframed direction, and a session that
// was not brokered, pass their bytes as they are. The end of the relay at a record
// boundary, before 'm', is that direction's clean end. The DP reads the
// records as it relays them (directrelay.go).

// The record types.
const (
	recData   = 'd'
	recMoved  = 'm'
	recRaw    = 'u'
	recReport = 'c'
)

// reportLen is the size of a report record: 'c' and the count.
const reportLen = 9

// reportTimeout bounds Close's write of the report: 9 bytes on an idle
// relay go at once unless the relay is stuck, and the session has ended
// on its direct connection anyway.
const reportTimeout = time.Second

// maxWriteRecord is the payload of the largest data record a side writes
// (the wire allows 65535): the buffer a framed write copies into.
const maxWriteRecord = 16 << 10

// headerRead is the buffer a framed Read reads a record's header into,
// with the bytes that follow it: a small record comes whole in one read
// of the relay, not two (its header, then its payload).
const headerRead = 4 << 10

// States of one direction of a moveConn.
const (
	dirFramed = iota // records on the relay
	dirDirect        // on the direct connection ('m')
	dirRaw           // bytes as they are on the relay ('u')
	dirEnded         // the relay ended before 'm' (read), or CloseWrite (write)
	dirFailed        // a bad record, or moved without a direct connection (read): rerr
)

// Errors of a moving session's records.
var (
	errMovedNoDirect = errors.New("rtcp: the peer moved the session to the direct connection, but this side holds none (its punch failed); the session is lost: dial again, or without Direct if it keeps happening")
	errRecordCut     = errors.New("rtcp: the relayed session ended in the middle of a record: bytes were lost on the way (the DP or the peer cut it); dial again")
	errEndedUnmoved  = errors.New("rtcp: the session ended before both its directions moved to the direct connection")
	errWriteClosed   = errors.New("rtcp: write after CloseWrite")
	// The causes of a punch stopped before it ended (stopPunch).
	errPunchClosed  = errors.New("rtcp: the session was closed before its punch ended")
	errPeerUnframed = errors.New("rtcp: the peer's punch failed (it said so on the relay), so this side's was stopped; the session stays on the relay")
	// errPunchStopped is DirectError's after Close stopped the punch.
	errPunchStopped = fmt.Errorf("%w: %w", errPunchClosed, context.Canceled)
	// errPeerStopped is DirectError's after Close when the peer's 'u'
	// stopped the punch first.
	errPeerStopped = fmt.Errorf("%w: %w", errPeerUnframed, context.Canceled)
)

// errOtherVersion ends the errors of records that break the rules: what
// to do about them.
const errOtherVersion = "the peer or the DP speaks another version of direct sessions; update the older side, or run without Direct"

// moveConn is a session that runs framed on its relay and moves to the
// direct connection when one is proven: a stream (net.Conn and CloseWrite).
type moveConn struct {
	relay         stream
	local, remote net.Addr
	stopPunch     func(cause error)            // ends the punch (Close, the peer's 'u'); may be nil
	stopOnce      sync.Once                    // stop calls stopPunch once: the first cause is the punch's
	stopCause     atomic.Pointer[error]        // that first cause, set as stop calls stopPunch
	onResult      func(direct bool, err error) // reports the move or the failed punch, once; may be nil
	gate          *punchGate                   // told of the session's first bytes (Read, Write), or nil; set before use

	closed      chan struct{} // closed by Close or Abort
	aborted     chan struct{} // closed by the first Abort (abortErr set)
	closeOnce   sync.Once
	relayOnce   sync.Once     // closes the relay once neither direction uses it, or at Close
	relayUsers  atomic.Int32  // directions still on the relay (2, then down)
	sentMoved   atomic.Bool   // this side has sent 'm': the relay stays open for the report
	wroteDirect atomic.Uint64 // bytes written on the direct connection, for the report
	moved       chan struct{} // closed once both directions run on the direct connection
	movedN      atomic.Int32
	moveDue     atomic.Bool // both directions moved; reportMoved reports it
	reported    atomic.Bool // onResult has been called (or is running): it is called once
	// offDirect counts the directions that settled without moving: 'u'
	// sent or read, or an end or failure before 'm'. At 2 the direct
	// connection is of no use: directionOff closes it.
	offDirect atomic.Int32

	punchDone chan struct{}      // closed once the punch has ended: direct or perr set
	rdl       *deadline.Deadline // follows rd: bounds a Read waiting for the punch
	// dmu guards direct, dropped, perr, rd, wd, isClosed, abortErr,
	// sendingMoved, inDirect and leftDirect. Of this session's locks it
	// is taken last: under wmu or rmu, never the other way round.
	dmu      sync.Mutex
	direct   stream    // the proven direct connection, or nil
	dropped  bool      // both directions settled on the relay: direct is closed, unused
	perr     error     // why the punch failed
	rd, wd   time.Time // the deadlines, set on whichever connection carries bytes
	isClosed bool      // Close has begun: no 'm' is sent, nor Write begun on direct, from here on
	abortErr error     // the first Abort's error (aborted is closed), or nil
	// inDirect is true while a Write is inside the direct connection's
	// Write (at most one: it holds wmu), and leftDirect, if Close made
	// it, is closed once that Write has counted its bytes (wroteDirect)
	// and left: Close waits for it before it writes the report.
	inDirect   bool
	leftDirect chan struct{}
	// sendingMoved is closed once the last write of 'm' begun before
	// Close has returned and its outcome is recorded (sentMoved, and the
	// direction counted moved, if it went out); nil if none was begun.
	// Close waits for it before it decides on the outcome and the report.
	sendingMoved chan struct{}

	rmu    sync.Mutex // guards the read side below (one Read at a time)
	rstate int
	rerr   error   // with dirFailed
	hdr    [3]byte // a record header being read
	hn     int     // bytes of hdr read
	rleft  int     // payload bytes left in the current data record
	rbuf   []byte  // headerRead bytes, while framed: a header is read into it
	ahead  []byte  // relay bytes read into rbuf past the header, not yet taken
	aerr   error   // the relay's error that came with ahead: the next relay read's
	pend   []byte  // relay bytes read past a 'u' record, served first

	peerRaw atomic.Bool // the peer said 'u': its punch failed (set by the read side)

	wmu    sync.Mutex // guards the write side below (one Write at a time)
	wstate int
	whdr   [3]byte
	owh    []byte // header bytes of the current record not yet written
	owp    int    // payload bytes the current record still owes
	wbuf   []byte // header and payload of a framed write, up to 3+maxWriteRecord
}

// newMoveConn returns the moving session over relay; setPunch delivers
// the punch's outcome.
func newMoveConn(relay stream, stopPunch func(error), onResult func(bool, error)) *moveConn {
	m := &moveConn{relay: relay, local: relay.LocalAddr(), remote: relay.RemoteAddr(), stopPunch: stopPunch, onResult: onResult,
		closed: make(chan struct{}), aborted: make(chan struct{}), moved: make(chan struct{}), punchDone: make(chan struct{}), rdl: deadline.New()}
	m.relayUsers.Store(2)
	return m
}

// setPunch delivers the punch's outcome: a proven direct connection c, or
// why there is none. Each direction then moves (or goes unframed) at its
// next Write or CloseWrite, never on its own: a record that the peer has
// not read when it closes would make its kernel reset the relay, and the
// reset can destroy bytes still on their way to the peer's peer.
func (m *moveConn) setPunch(c net.Conn, err error) {
	m.dmu.Lock()
	if m.isClosed {
		m.dmu.Unlock()
		closeIf(c)
		m.report(false, cmp.Or(err, errEndedUnmoved))
		return
	}
	if c != nil && m.dropped {
		// Both directions settled on the relay while the punch ran:
		// the connection is of no use (directionOff). Close reports.
		close(m.punchDone)
		m.dmu.Unlock()
		c.Close()
		return
	}
	if c != nil {
		d := &rawConn{Conn: c, local: m.local, remote: m.remote}
		if !m.rd.IsZero() {
			d.SetReadDeadline(m.rd)
		}
		if !m.wd.IsZero() {
			d.SetWriteDeadline(m.wd)
		}
		m.direct = d
	} else {
		m.perr = err
	}
	close(m.punchDone)
	m.dmu.Unlock()
	if c == nil {
		m.report(false, err)
	}
}

// report tells onResult the outcome, once: the first call runs it, and
// the others return at once, without waiting for it to return, so that
// Close never waits for a slow onResult (an event handler, a log) that
// a Write is running.
func (m *moveConn) report(direct bool, err error) {
	if m.onResult != nil && m.reported.CompareAndSwap(false, true) {
		m.onResult(direct, err)
	}
}

// punched returns the punch's outcome, if it has ended.
func (m *moveConn) punched() (direct stream, err error, done bool) {
	select {
	case <-m.punchDone:
		return m.direct, m.perr, true
	default:
		return nil, nil, false
	}
}

// relayDone is called once by each direction that no longer uses the
// relay; the second closes it, unless this side sent 'm': its relay then
// stays open, idle, for the report that Close writes.
func (m *moveConn) relayDone() {
	if m.relayUsers.Add(-1) == 0 && !m.sentMoved.Load() {
		m.relayOnce.Do(func() { m.relay.Close() })
	}
}

// directionOff is called once by each direction that settles without
// moving (with its lock held): 'u' sent or read, or its end or failure
// before 'm'. The second closes the direct connection, if the punch
// proved one: neither direction will ever use it, and it holds a
// descriptor and a NAT's mapping until Close.
func (m *moveConn) directionOff() {
	if m.offDirect.Add(1) != 2 {
		return
	}
	m.dmu.Lock()
	m.dropped = true // a connection the punch proves later is closed at once (setPunch)
	d := m.direct
	m.dmu.Unlock()
	if d != nil {
		d.Close()
	}
}

// writeReport writes the report record on the relay, within its write
// deadline: the bytes this side wrote on the direct connection. Its
// errors are ignored: the relay carries nothing of the session any more.
func (m *moveConn) writeReport() {
	var rec [reportLen]byte
	rec[0] = recReport
	binary.BigEndian.PutUint64(rec[1:], m.wroteDirect.Load())
	m.relay.Write(rec[:])
}

// directionMoved is called once by each direction that moved, with its
// lock held: the report of the move waits for reportMoved, after the
// lock is let go, so that a slow onResult (an event handler, a log)
// holds up no other call on the direction.
func (m *moveConn) directionMoved() {
	if m.movedN.Add(1) == 2 {
		close(m.moved)
		m.moveDue.Store(true)
	}
}

// reportMoved reports the move, if it is due: Read, Write and CloseWrite
// call it once they have let go of their direction's lock.
func (m *moveConn) reportMoved() {
	if m.moveDue.CompareAndSwap(true, false) {
		m.report(true, nil)
	}
}

// reportDue (mu held: wmu or rmu) reports a due move before the call
// goes on to wait on the direct connection, which may take until the
// peer reads or writes: mu is let go for the report, and the caller
// looks at its direction's state again after it.
func (m *moveConn) reportDue(mu *sync.Mutex) {
	if m.moveDue.Load() {
		mu.Unlock()
		m.reportMoved()
		mu.Lock()
	}
}

// isDirect reports whether both directions run on the direct connection.
func (m *moveConn) isDirect() bool {
	select {
	case <-m.moved:
		return true
	default:
		return false
	}
}

// punchErr is why the punch failed, or nil; after Close, for a punch that
// had not ended, what stopped it: the peer's 'u' if it came first, else
// Close (its outcome, when it comes, goes to onResult only: the session
// no longer runs on either path).
func (m *moveConn) punchErr() error {
	_, err, done := m.punched()
	if !done {
		select {
		case <-m.closed:
			if c := m.stopCause.Load(); c != nil && *c == errPeerUnframed {
				return errPeerStopped
			}
			return errPunchStopped // Close's, or about to be
		default:
		}
	}
	return err
}

// stop ends the punch with cause, the first time only: a context keeps
// its first cause, and stopCause says which it was.
func (m *moveConn) stop(cause error) {
	if m.stopPunch == nil {
		return
	}
	m.stopOnce.Do(func() {
		m.stopCause.Store(&cause)
		m.stopPunch(cause)
	})
}

// switchWrite (wmu held, framed) sends 'm' or 'u' if the punch has ended
// and no record is under way. A 'u' takes the first bytes of b with it,
// in one write of the relay: it returns how many of b it wrote.
func (m *moveConn) switchWrite(b []byte) (int, error) {
	d, _, done := m.punched()
	if !done || len(m.owh) > 0 || m.owp > 0 {
		return 0, nil
	}
	if d == nil || m.peerRaw.Load() {
		// Our punch failed, or the peer's did (it said 'u': it holds
		// no direct connection, and an 'm' would fail its Read): both
		// directions stay on the relay.
		k := min(len(b), maxWriteRecord)
		if cap(m.wbuf) < 1+k {
			m.wbuf = make([]byte, 0, 1+k)
		}
		n, err := m.relay.Write(append(append(m.wbuf[:0], recRaw), b[:k]...))
		if n == 0 {
			return 0, err // a deadline, say: the next Write tries again
		}
		m.wbuf = nil
		m.wstate = dirRaw
		m.directionOff()
		return n - 1, err
	}
	// Close and the move take turns (shut): either Close has begun and
	// no 'm' goes out, or Close waits for this write of 'm' to return
	// before it looks at sentMoved, so that a side that sent 'm' always
	// writes its report after it.
	m.dmu.Lock()
	if m.isClosed {
		m.dmu.Unlock()
		return 0, m.writeErr(net.ErrClosed)
	}
	sending := make(chan struct{})
	m.sendingMoved = sending
	m.dmu.Unlock()
	n, err := m.relay.Write([]byte{recMoved})
	// sending is closed once sentMoved and the move are final: Close
	// reads both then.
	defer close(sending)
	if n == 0 {
		select {
		case <-m.closed:
			// Close's own deadline on the relay ended it, not one the
			// application set: a timeout would invite a retry.
			return 0, m.writeErr(net.ErrClosed)
		default:
		}
		return 0, err
	}
	m.wbuf = nil
	m.wstate = dirDirect
	m.sentMoved.Store(true) // before relayDone: the relay stays open
	m.relayDone()
	m.directionMoved()
	return 0, nil
}

// Write writes b on whichever way this direction takes (write), and
// tells the punch's gate that it wrote.
func (m *moveConn) Write(b []byte) (int, error) {
	n, err := m.write(b)
	m.gate.wrote(n)
	return n, err
}

func (m *moveConn) write(b []byte) (int, error) {
	defer m.reportMoved() // after wmu is let go
	m.wmu.Lock()
	defer m.wmu.Unlock()
	sent := 0 // bytes of b that went with a 'u'
	if m.wstate == dirFramed {
		n, err := m.switchWrite(b)
		if err != nil || n > 0 && n == len(b) {
			return n, err
		}
		sent, b = n, b[n:]
	}
	switch m.wstate {
	case dirDirect:
		m.reportDue(&m.wmu)
		if m.wstate != dirDirect { // a CloseWrite came in
			return 0, m.writeErr(errWriteClosed)
		}
		if !m.enterDirect() {
			return 0, m.writeErr(net.ErrClosed)
		}
		n, err := m.direct.Write(b)
		m.wroteDirect.Add(uint64(n))
		m.leaveDirect()
		return n, err
	case dirRaw:
		n, err := m.relay.Write(b)
		return sent + n, err
	case dirEnded:
		return 0, m.writeErr(errWriteClosed)
	}
	return m.writeFramed(b)
}

// enterDirect (wmu held) marks a Write inside the direct connection's
// Write, for Close to wait for, unless Close has begun: it returns false
// then, and the Write writes nothing.
func (m *moveConn) enterDirect() bool {
	m.dmu.Lock()
	defer m.dmu.Unlock()
	if m.isClosed {
		return false
	}
	m.inDirect = true
	return true
}

// leaveDirect (wmu held) marks the Write out of the direct connection's
// Write, its bytes counted, and tells a Close that waits for it.
func (m *moveConn) leaveDirect() {
	m.dmu.Lock()
	m.inDirect = false
	left := m.leftDirect
	m.leftDirect = nil
	m.dmu.Unlock()
	if left != nil {
		close(left)
	}
}

// writeFramed writes b as data records on the relay. A write cut short
// (a deadline) leaves the record it was in owing its rest: the next
// Write's bytes complete it, so the records stay whole.
func (m *moveConn) writeFramed(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		if len(m.owh) == 0 && m.owp == 0 {
			l := min(len(b), maxWriteRecord)
			m.whdr = [3]byte{recData, byte(l >> 8), byte(l)}
			m.owh, m.owp = m.whdr[:], l
		}
		k := min(len(b), m.owp)
		// wbuf grows to the records written: a small message costs no
		// buffer of maxWriteRecord.
		buf := append(append(m.wbuf[:0], m.owh...), b[:k]...)
		m.wbuf = buf[:0]
		n, err := m.relay.Write(buf)
		hw := min(n, len(m.owh))
		m.owh = m.owh[hw:]
		pw := n - hw
		m.owp -= pw
		total += pw
		b = b[pw:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// CloseWrite ends this side's direction: on the relay (its end there, at
// a record boundary, is a clean end) or on the direct connection.
func (m *moveConn) CloseWrite() error {
	defer m.reportMoved() // after wmu is let go
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.wstate == dirFramed {
		m.switchWrite(nil)
	}
	switch m.wstate {
	case dirDirect:
		m.wstate = dirEnded
		return m.direct.CloseWrite()
	case dirRaw:
		m.wstate = dirEnded
		return m.relay.CloseWrite()
	case dirFramed:
		m.wstate = dirEnded
		err := m.relay.CloseWrite()
		m.relayDone()
		m.directionOff()
		return err
	}
	return nil
}

// Read reads from whichever way this direction takes (read), and tells
// the punch's gate that it read.
func (m *moveConn) Read(b []byte) (int, error) {
	n, err := m.read(b)
	m.gate.read(n)
	return n, err
}

func (m *moveConn) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	defer m.reportMoved() // after rmu is let go
	m.rmu.Lock()
	defer m.rmu.Unlock()
	select {
	case <-m.closed:
		// Not the bytes read ahead (ahead, pend): a Read after Close
		// fails, as the relay's would.
		return 0, &net.OpError{Op: "read", Net: "rtcp", Source: m.local, Addr: m.remote, Err: net.ErrClosed}
	default:
	}
	if (len(m.ahead) > 0 || len(m.pend) > 0) && m.rdl.Passed() {
		// Nor past the deadline: the relay's Read would fail.
		return 0, &net.OpError{Op: "read", Net: "rtcp", Source: m.local, Addr: m.remote, Err: os.ErrDeadlineExceeded}
	}
	for {
		switch m.rstate {
		case dirDirect:
			m.reportDue(&m.rmu) // it stays dirDirect
			return m.direct.Read(b)
		case dirRaw:
			if len(m.pend) > 0 {
				n := copy(b, m.pend)
				m.pend = m.pend[n:]
				if len(m.pend) == 0 {
					m.pend = nil // the session holds no rbuf while relayed
				}
				return n, nil
			}
			return m.readRelay(b)
		case dirEnded:
			return 0, io.EOF
		case dirFailed:
			return 0, m.rerr
		}
		if m.rleft > 0 && len(m.ahead) > 0 {
			n := copy(b[:min(len(b), m.rleft)], m.ahead)
			m.ahead = m.ahead[n:]
			m.rleft -= n
			return n, nil
		}
		if m.rleft > 0 {
			n, err := m.readRelay(b[:min(len(b), m.rleft)])
			m.rleft -= n
			if err == io.EOF {
				err = m.failRead(errRecordCut)
			}
			return n, err
		}
		if err := m.readHeader(); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes the session's bytes to w until their end (for
// Conn.WriteTo and the relays): the records' bytes as Read gives them, and
// once this direction has settled, the rest by its carrier's own way, if
// it has one: after 'u', a server's relayed stream (mux.Stream) hands its
// bytes on from its link's read loop, with no buffer and no wake-up of
// this goroutine per chunk, as for a session that was not brokered.
func (m *moveConn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var buf []byte
	for {
		src, bulk := m.settled()
		if src != nil {
			n, err := src.WriteTo(w)
			return total + n, err
		}
		// A small buffer while framed (the records last as long as the
		// punch, and a relay that writes itself out takes over once
		// unframed), a large one once moved, or unframed on a relay
		// that does not (a client's TCP connection to the DP).
		if size := headerRead; len(buf) < size || bulk && len(buf) < 32<<10 {
			if bulk {
				size = 32 << 10
			}
			buf = make([]byte, size)
		}
		n, err := m.Read(buf)
		if n > 0 {
			k, werr := w.Write(buf[:n])
			total += int64(k)
			if werr == nil && k < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// settled returns the relay, once this direction carries its bytes there
// as they are ('u') and no byte read ahead (or error that came with them)
// is left, if the relay writes them out itself; else nil. (A direct
// connection is a rawConn, which does not.) bulk reports that the
// direction is read on through WriteTo's own buffer with no end in sight:
// moved, or settled on a relay that does not write itself out (a
// client's TCP connection to the DP).
func (m *moveConn) settled() (src io.WriterTo, bulk bool) {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	if m.rstate != dirRaw || len(m.pend) > 0 || m.aerr != nil {
		return nil, m.rstate == dirDirect
	}
	select {
	case <-m.closed:
		return nil, false // Read says so
	default:
	}
	wt, _ := m.relay.(io.WriterTo)
	return wt, wt == nil
}

// readHeader (rmu held) reads the next record's header and acts on it.
// It reads the relay into rbuf, so that the bytes after the header come
// with it (ahead): nothing follows 'm', and what follows 'u' is kept
// (pend).
func (m *moveConn) readHeader() error {
	for m.hn == 0 || m.hdr[0] == recData && m.hn < 3 {
		if len(m.ahead) > 0 {
			m.hdr[m.hn] = m.ahead[0]
			m.ahead = m.ahead[1:]
			m.hn++
			continue
		}
		if m.rbuf == nil {
			m.rbuf = make([]byte, headerRead)
		}
		n, err := m.readRelay(m.rbuf)
		m.ahead = m.rbuf[:n]
		if n > 0 {
			m.aerr = err // after the bytes, as the relay gave it
			continue
		}
		if err == io.EOF {
			if m.hn == 0 {
				m.rstate, m.rbuf, m.ahead = dirEnded, nil, nil
				m.relayDone()
				m.directionOff()
				return nil
			}
			return m.failRead(errRecordCut)
		}
		if err != nil {
			return err
		}
	}
	switch m.hdr[0] {
	case recData:
		l := int(m.hdr[1])<<8 | int(m.hdr[2])
		if l == 0 {
			return m.failRead(errors.New("rtcp: the relayed session sent an empty data record: " + errOtherVersion))
		}
		m.rleft, m.hn = l, 0
	case recRaw:
		m.pend, m.ahead, m.rbuf = m.ahead, nil, nil
		m.rstate, m.hn = dirRaw, 0
		m.peerRaw.Store(true)
		m.stop(errPeerUnframed) // the peer has no direct connection: ours is no use
		m.directionOff()
	case recMoved:
		if len(m.ahead) > 0 {
			return m.failRead(fmt.Errorf("rtcp: the relayed session sent %q after its moved record: "+errOtherVersion, m.ahead[:min(len(m.ahead), 16)]))
		}
		if err := m.waitPunch(); err != nil {
			return err // the record is kept for the next Read
		}
		m.hn = 0
		if m.direct == nil {
			return m.failRead(fmt.Errorf("%w: %w", errMovedNoDirect, m.perr))
		}
		m.rstate, m.rbuf, m.ahead = dirDirect, nil, nil
		m.relayDone()
		m.directionMoved()
	default:
		return m.failRead(fmt.Errorf("rtcp: the relayed session sent a record of type %q, not d, m or u: "+errOtherVersion, m.hdr[0]))
	}
	return nil
}

// readRelay (rmu held) reads the relay, or returns the error that came
// with the bytes read ahead, once they are taken.
func (m *moveConn) readRelay(b []byte) (int, error) {
	if err := m.aerr; err != nil {
		m.aerr = nil
		return 0, err
	}
	return m.relay.Read(b)
}

// writeErr is err as the error of a Write on m.
func (m *moveConn) writeErr(err error) error {
	return &net.OpError{Op: "write", Net: "rtcp", Source: m.local, Addr: m.remote, Err: err}
}

// failRead (rmu held, framed) fails the read direction with err.
func (m *moveConn) failRead(err error) error {
	m.rstate, m.rerr = dirFailed, &net.OpError{Op: "read", Net: "rtcp", Source: m.local, Addr: m.remote, Err: err}
	m.rbuf, m.ahead = nil, nil
	m.directionOff()
	return m.rerr
}

// waitPunch waits for this side's punch to end (its own deadline bounds
// it), within the read deadline.
func (m *moveConn) waitPunch() error {
	select {
	case <-m.punchDone:
		return nil
	case <-m.closed:
		return net.ErrClosed
	case <-m.rdl.Wait():
		select {
		case <-m.punchDone: // ended as well: read on
			return nil
		default:
			return os.ErrDeadlineExceeded
		}
	}
}

func (m *moveConn) SetDeadline(t time.Time) error      { return m.setDeadline(true, true, t) }
func (m *moveConn) SetReadDeadline(t time.Time) error  { return m.setDeadline(true, false, t) }
func (m *moveConn) SetWriteDeadline(t time.Time) error { return m.setDeadline(false, true, t) }

// setDeadline sets the deadline on both connections, and keeps it for a
// direct connection still to come.
func (m *moveConn) setDeadline(read, write bool, t time.Time) error {
	m.dmu.Lock()
	defer m.dmu.Unlock()
	if read {
		m.rd = t
		m.rdl.Set(t)
	}
	if write {
		m.wd = t
	}
	var err error
	if m.relayUsers.Load() > 0 && !m.isClosed {
		// Else neither direction uses the relay: closed, or kept idle
		// for the report, whose errors do not concern the session; or
		// Close has begun, and its own deadline bounds the 'm' it may
		// wait for and the report.
		err = setDeadlines(m.relay, read, write, t)
	}
	if m.direct != nil && !m.dropped {
		if derr := setDeadlines(m.direct, read, write, t); err == nil {
			err = derr
		}
	}
	return err
}

func (m *moveConn) LocalAddr() net.Addr  { return m.local }
func (m *moveConn) RemoteAddr() net.Addr { return m.remote }

// Close ends the session both ways, on both connections, and the punch.
// A side that sent 'm' writes its report on the relay first. Close ends
// the direct connection first, and then waits, within reportTimeout, for
// a Write that was inside that connection's Write (it returns promptly
// once its connection is closed), so that the report counts the bytes
// it wrote: for half of what is left of the bound at most, which leaves
// the report the rest. It does not wait for a Write still reporting the
// move, which writes nothing once Close has begun, nor for its onResult
// to return (report). On the relay it waits, within the same bound, for
// a write of 'm' under way, whose outcome decides whether a report is
// owed, and for the report.
func (m *moveConn) Close() error {
	m.shut(nil)
	return nil
}

// Abort ends the session so that the peer's reads fail. An Abort that
// comes while a Close is under way (it may wait for the relay: for a
// write of 'm', or for the report) cuts the relay at once, which ends
// Close's waits, and returns: Close then writes no report, and returns
// too. It leaves the direct connection to Close, which ends it as a
// Close does (it may not have done so yet when Abort returns): the
// Close came first.
func (m *moveConn) Abort(err error) {
	if err == nil {
		m.shut(nil) // a Close, as it always was
		return
	}
	m.dmu.Lock()
	closing := m.isClosed
	if m.abortErr == nil {
		m.abortErr = err
		close(m.aborted)
	}
	m.dmu.Unlock()
	if closing {
		abortStream(m.relay, err)
		return
	}
	// Not closing yet: if a Close has begun since, it reads abortErr
	// when it marks the session closed and ends it as this Abort would,
	// without waiting for anything; shut waits for that only.
	m.shut(err)
}

// wasAborted reports whether an Abort has come.
func (m *moveConn) wasAborted() bool {
	select {
	case <-m.aborted:
		return true
	default:
		return false
	}
}

func (m *moveConn) shut(abort error) {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.stop(errPunchClosed)
		m.dmu.Lock()
		m.isClosed = true // no 'm' nor direct Write from here on; a punch that ends later reports (setPunch)
		if abort == nil {
			abort = m.abortErr // an Abort came first, and waits for this shut
		}
		sending := m.sendingMoved
		var left chan struct{} // closed once the Write inside direct's Write has left
		if m.inDirect {
			left = make(chan struct{})
			m.leftDirect = left
		}
		d, perr, done := m.punched()
		if m.dropped {
			d = nil // closed already
		}
		m.dmu.Unlock()
		// The direct connection ends first: the peer must not wait for
		// its end while the report waits for a slow relay, and a Write
		// waiting on it returns.
		if d != nil {
			if abort != nil {
				abortStream(d, abort)
			} else {
				d.Close()
			}
		}
		// One deadline bounds what Close waits for on the relay: an 'm'
		// under way, which may wait for a relay that does not drain, and
		// the report.
		limit := time.Now().Add(reportTimeout)
		if sending != nil && abort == nil {
			// A Write began to send 'm' before Close (switchWrite): its
			// outcome decides whether the session moved and whether a
			// report is owed, so it goes first. (Abort owes no report,
			// and its cut of the relay ends that write.)
			m.relay.SetWriteDeadline(limit)
			select {
			case <-sending:
			case <-m.aborted: // it cut the relay: no report
			}
		}
		if left != nil && abort == nil {
			// A Write was inside the direct connection's Write, which
			// the Close above ends: the report counts what it wrote.
			// (Abort owes no report.) Within half of what is left of
			// the bound: a Write that the end of its connection does
			// not wake must not use up the report's time, or there
			// would be no report at all, only the relay's end.
			t := time.NewTimer(time.Until(limit) / 2)
			select {
			case <-left:
			case <-t.C:
			case <-m.aborted:
			}
			t.Stop()
		}
		if m.isDirect() {
			// Not reportMoved: a call that has taken the due move
			// may not have reported it yet.
			m.report(true, nil)
		} else if done {
			m.report(false, cmp.Or(perr, errEndedUnmoved)) // unless it moved
		}
		m.relayOnce.Do(func() {
			switch {
			case abort != nil:
				abortStream(m.relay, abort)
				return
			case m.wasAborted():
				return // an Abort came while Close waited: it cut the relay
			case m.sentMoved.Load(): // final: no 'm' is under way now (or an Abort cuts it)
				m.relay.SetWriteDeadline(limit)
				m.writeReport()
			}
			m.relay.Close()
		})
	})
}
