package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"rtcp/internal/sockio"
)

// Config sets up a Session: the limits and behaviour its caller chooses,
// and what a handshake agreed with the peer before it started; how the
// wire works comes from the Framer (Semantics). Its zero value is a
// session without flow control and with default limits.
type Config struct {
	// Name describes the link in errors, as in "link to DP 10.0.0.1:9000".
	Name string

	// FlowControl turns on credit windows. Both sides must have agreed on
	// it (each offered a window). Window is the credit this side grants
	// each stream at first; PeerWindow is the credit the peer grants.
	FlowControl bool
	Window      int
	PeerWindow  int

	// MaxWindow is the most a stream's receive window grows to (flow
	// control). A stream's window doubles (later up to quadruples), from
	// Window, whenever its reader keeps up and the window, not the reader, holds
	// the peer back, as on a path with a long round trip (flow.go). A stream whose
	// reader falls behind never grows. Zero: Window (no growth).
	MaxWindow int
	// LinkWindowBudget bounds what the streams of this session together
	// may grow their windows by, in bytes above Window each; Budget, if
	// not nil, is shared with other sessions (a DP's, a Listener's) and
	// bounds their sum. When a budget is spent, windows stop growing:
	// credit is withheld, not memory taken. Default 256 MiB.
	LinkWindowBudget int
	Budget           *Budget
	// Pipes bounds, in pipes, where streams relayed to TCP sockets
	// (WriteTo) keep the bytes that arrive while a destination socket is
	// full: in the pipes they were spliced into from the link, each up to
	// 1 MiB in the kernel and two descriptors, so that a burst costs no
	// copy through user space; beyond it, and for a stream holding
	// maxStreamPipes, they are read into memory. It may be shared by
	// many sessions; nil: DefaultPipes for the session.
	Pipes *Budget
	// MinRTT floors the session's round-trip estimate, which window
	// growth uses (tests pin it, so that growth does not depend on how
	// fast the machine answers an open).
	MinRTT time.Duration

	// MaxBuffer bounds the bytes a stream holds for its reader when there
	// is no flow control (a peer that writes as fast as TCP lets it, as
	// every original does). A stream that reaches it stops the session
	// reading the link until its reader takes some: TCP then holds the
	// peer back. Default 256 KiB.
	MaxBuffer int

	// StallTimeout bounds how long one full stream (no flow control) may
	// hold up the others on its link: if its reader takes nothing for
	// that long while the link carries other streams, the stream is cut
	// (with a reason naming StallTimeout) and the link reads on. A link
	// with no other stream waits for as long as the stream lasts.
	// Default 10 s; negative: never cut.
	StallTimeout time.Duration

	// Logger, if not nil, is told of every stream the session cuts and
	// why.
	Logger *slog.Logger

	// ChunkSize is the most Data bytes one frame carries to the peer.
	// Default 16 KiB.
	ChunkSize int

	// HalfClose says the peer understands KindCloseWrite. Without it,
	// Stream.CloseWrite fails with ErrNoHalfClose.
	HalfClose bool

	// ManualAck makes Accept return streams that are not yet acknowledged:
	// the caller answers each with Stream.Ack.
	ManualAck bool

	// AcceptBacklog is how many streams wait for Accept before new opens
	// are refused. Default 256. A negative value refuses every open.
	AcceptBacklog int

	// MaxPendingOpens bounds Opens waiting for their Ack. Default 1024.
	MaxPendingOpens int

	// MaxQueuedFrames bounds control frames waiting to be written; a peer
	// that stops reading while it keeps sending is cut off. Default 65536.
	MaxQueuedFrames int

	// StreamAddrs gives the local and remote address of a stream opened or
	// accepted with the given name and address. Nil: the link's own.
	StreamAddrs func(name, addr string, opened bool) (local, remote net.Addr)

	// CloseTimeout bounds how long Close waits to flush what is queued,
	// and then for the peer to close its side. Default 5 s.
	CloseTimeout time.Duration

	// KeepAlive is how often the session sends a KindKeepAlive frame
	// while it has nothing else to send; zero sends none. SetKeepAlive
	// changes it later (after a handshake, say). Noticing a silent peer is
	// the reader's part: see IdleReader.
	KeepAlive time.Duration

	// Sent is an open that went out on the connection before the session
	// started (a client's Connect written with its handshake), whose
	// answer may already wait in the Framer. The session takes the peer's
	// first answer for it, as if Open had sent it first; AwaitSent returns
	// its stream. Ignored on a wire whose opener assigns the ID
	// (Semantics.OpenerAssignsID): there is no answer to wait for.
	Sent *SentOpen
}

// A SentOpen is an open written to the connection before its session
// started (Config.Sent): what an open frame carries, and when it went out.
type SentOpen struct {
	Name, Addr, Token string
	// At is when the open was written; the session times its first round
	// trip from it (zero: when the session starts).
	At time.Time
}

// Errors a stream or session reports. Conn operations wrap them in a
// *net.OpError.
var (
	// ErrNoHalfClose is returned by CloseWrite when the peer does not
	// understand half-close (a plain peer).
	ErrNoHalfClose = errors.New("rtcp: peer does not support half-close (CloseWrite); use Close")
	// ErrWriteClosed is returned by Write after CloseWrite.
	ErrWriteClosed = errors.New("rtcp: write after CloseWrite")
	// ErrPeerClosed is returned by Write after the peer closed the stream.
	ErrPeerClosed = errors.New("rtcp: session closed by peer")
	// ErrBacklog is the reason an open is refused when nobody accepts.
	ErrBacklog = errors.New("rtcp: server is not accepting sessions fast enough (accept backlog full); retry later")
)

// A Session runs streams over one connection.
type Session struct {
	c   net.Conn
	fr  Framer
	cfg Config
	sem Semantics // fr's, read once by New

	// answerMu orders the answers to the peer's opens (answer.go); it is
	// taken before mu and qmu, never while holding them.
	answerMu sync.Mutex

	mu      sync.Mutex
	streams map[int64]*Stream
	pending []*pendingOpen
	answers []*answerSlot // the peer's opens still owed an answer, in order (answer.go)
	nextID  int64
	early   *pendingOpen          // Config.Sent's, for AwaitSent; set by New
	err     error                 // why the session ended; set once
	cause   atomic.Pointer[error] // why the connection was closed from inside, if it was (set once; any goroutine, any lock held)
	drain   bool                  // refuse opens; end the session with its last stream
	refuse  string                // refuse opens with this reason (RefuseOpens)

	// qmu guards q, qbytes, qtaken, qsolo, tsolo, qclose, combining,
	// qspace's replacement, and each Stream's qgen and qsent.
	qmu    sync.Mutex
	q      []*Frame
	qbytes int
	qtaken uint64 // how many times the queue was taken to be written (writeQueued)
	// qsolo is the stream whose Data is all the queue holds (noDataYet:
	// none; linkShared: several streams'), tsolo the same of the queue
	// last taken: Data on its way to the link, which noteData has not
	// counted yet.
	qsolo, tsolo int64
	qclose       bool // no more frames; the writer drains and exits
	// combining: a direct write holds wmu and will write the queue with
	// its own frame (combine), so enqueueData need not wake the writer.
	combining bool
	// wmu is held by whoever writes frames to the connection: the write
	// loop, a Stream.Write writing its own frame (writeData), a splice
	// (SpliceFrom). Taken before qmu; whoever takes a batch from the
	// queue holds it, so a direct write never overtakes a queued frame.
	// A Write that waits for it can give up (waitLink).
	wmu    linkLock
	cbatch []*Frame                  // combine's list of frames; guarded by wmu
	dframe Frame                     // the frame of a direct write; guarded by wmu
	ends   [maxBatchFrames + 1]int64 // a direct write's frames' ends (writeData); guarded by wmu
	// lastData is the stream whose Data frame was written last (-1:
	// none yet), soloFrames how many of its Data frames were written in
	// a row (up to soloRun), and mixed whether another stream's came before them
	// (noteData); guarded by wmu.
	lastData   int64
	soloFrames int
	mixed      bool
	// dataOwner is the stream that has the link to itself by that
	// measure (shared), noDataYet before the first Data, or linkShared:
	// what enqueueData, which does not hold wmu, asks. Written by
	// noteData.
	dataOwner atomic.Int64
	// combines counts the direct writes that yielded (combine); guarded
	// by wmu.
	combines int
	qwake    chan struct{} // cap 1: the writer has work
	qspace   chan struct{} // closed when the queue drains
	qdone    chan struct{} // closed when the writer has exited
	accept   chan *Stream
	done     chan struct{} // closed when the session ends
	once     sync.Once
	wg       sync.WaitGroup
	readEnd  chan struct{}
	// readStop is closed when the read loop has stopped reading the
	// connection (just before it ends the session), so that a closing
	// session knows whether it must drain the connection itself.
	readStop chan struct{}

	keepAlive atomic.Int64 // time.Duration between KindKeepAlive frames
	endIdle   bool         // the read loop ends the drained session (readerCloseIfIdle)

	// split is fr, if it is a DataSplitter; linkRC is c's, when the rest
	// of a split frame can be spliced from it; idle is the IdleReader
	// under fr, if any (SetIdleReader): splicing counts as reading.
	split  DataSplitter
	linkRC syscall.RawConn
	idle   atomic.Pointer[IdleReader]
	// count is fr, if it is a Counter: a direct write that fails learns
	// from it whether its frame went out (sent). Set by New; called with
	// wmu held.
	count Counter

	// full is a stream that push found full (no flow control): the read
	// loop waits for its reader before it reads the link again. Only the
	// read loop uses it.
	full *Stream
	// linkBudget bounds the window growth of this session's streams.
	linkBudget Budget
	// pipes bounds the pipes its streams hold bytes in (Config.Pipes).
	pipes *Budget
	// rtt is the shortest round trip to the peer seen, in nanoseconds, 0
	// until timed (ObserveRTT).
	rtt atomic.Int64
}

// Defaults of Config.
const (
	DefaultStallTimeout     = 10 * time.Second
	DefaultLinkWindowBudget = 256 << 20
	// DefaultPipes is a session's Config.Pipes when none is given.
	DefaultPipes = 32
)

type pendingOpen struct {
	ch        chan openResult // cap 1
	sent      time.Time
	name      string
	addr      string
	token     string
	abandoned bool
}

type openResult struct {
	st  *Stream
	err error
}

// maxQueuedBytes bounds Data bytes queued for the writer, across streams.
const maxQueuedBytes = 1 << 20

// New starts a session on c, reading and writing frames with fr.
func New(c net.Conn, fr Framer, cfg Config) *Session {
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = 256 << 10
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	cfg.MaxWindow = max(cfg.MaxWindow, cfg.Window)
	if cfg.LinkWindowBudget <= 0 {
		cfg.LinkWindowBudget = DefaultLinkWindowBudget
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 16 << 10
	}
	if cfg.AcceptBacklog == 0 {
		cfg.AcceptBacklog = 256
	}
	if cfg.MaxPendingOpens <= 0 {
		cfg.MaxPendingOpens = 1024
	}
	if cfg.MaxQueuedFrames <= 0 {
		cfg.MaxQueuedFrames = 65536
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.Name == "" {
		cfg.Name = "link to " + c.RemoteAddr().String()
	}
	backlog := max(cfg.AcceptBacklog, 0)
	s := &Session{
		c:        c,
		fr:       fr,
		cfg:      cfg,
		streams:  make(map[int64]*Stream),
		qwake:    make(chan struct{}, 1),
		qspace:   make(chan struct{}),
		qdone:    make(chan struct{}),
		accept:   make(chan *Stream, backlog),
		done:     make(chan struct{}),
		readEnd:  make(chan struct{}),
		readStop: make(chan struct{}),
		lastData: -1,
		wmu:      make(linkLock, 1),
	}
	s.dataOwner.Store(noDataYet)
	s.qsolo, s.tsolo = noDataYet, noDataYet
	if w, ok := fr.(Wire); ok {
		s.sem = w.Semantics()
	}
	s.linkBudget.limit = int64(cfg.LinkWindowBudget)
	s.pipes = cfg.Pipes
	if s.pipes == nil {
		s.pipes = NewBudget(DefaultPipes)
	}
	s.keepAlive.Store(int64(cfg.KeepAlive))
	if o := cfg.Sent; o != nil && !s.sem.OpenerAssignsID {
		// First in line for an answer, before the read loop can read one.
		s.early = &pendingOpen{ch: make(chan openResult, 1), name: o.Name, addr: o.Addr, token: o.Token, sent: o.At}
		if s.early.sent.IsZero() {
			s.early.sent = time.Now()
		}
		s.pending = append(s.pending, s.early)
	}
	s.count, _ = fr.(Counter)
	if ds, ok := fr.(DataSplitter); ok {
		s.split = ds
		if tc := tcpConnOf(c); tc != nil && spliceRestOK {
			if rc, err := tc.SyscallConn(); err == nil && sockio.NonBlocking(rc) {
				s.linkRC = rc
			}
		}
	}
	s.wg.Add(2)
	go s.readLoop()
	go s.writeLoop()
	return s
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// NumStreams returns the number of open streams.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// LocalAddr and RemoteAddr are the link connection's addresses.
func (s *Session) LocalAddr() net.Addr  { return s.c.LocalAddr() }
func (s *Session) RemoteAddr() net.Addr { return s.c.RemoteAddr() }

// Close flushes what is queued, half-closes the connection and waits for
// the peer to close too (each bounded by Config.CloseTimeout), closes the
// connection, ends every stream with an error, and waits for the session's
// goroutines.
func (s *Session) Close() error {
	s.shutdown(fmt.Errorf("rtcp: %s closed", s.cfg.Name), true)
	s.wg.Wait()
	return nil
}

// Abort ends the session at once with err, telling the peer err's text.
func (s *Session) Abort(err error) {
	s.enqueue(&Frame{Kind: KindClose, ID: -1, Reason: err.Error(), Abort: true})
	s.shutdown(err, true)
	s.wg.Wait()
}

// shutdown ends the session with err. With flush, the writer first drains
// the queue (bounded by CloseTimeout).
func (s *Session) shutdown(err error, flush bool) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		streams := s.streams
		s.streams = nil
		pending := s.pending
		s.pending = nil
		s.mu.Unlock()

		close(s.done)
		for _, st := range streams {
			st.linkDown(err)
		}
		for _, p := range pending {
			p.ch <- openResult{err: err}
		}

		s.qmu.Lock()
		s.qclose = true
		s.qmu.Unlock()
		s.wake()
		if flush {
			s.c.SetWriteDeadline(time.Now().Add(s.cfg.CloseTimeout))
			select {
			case <-s.qdone:
			case <-s.readEnd:
				// The peer went away; nothing more can be flushed.
			}
			s.lingerClose()
		}
		s.c.Close()
		// Streams waiting in the accept queue were never handed out.
		for {
			select {
			case st := <-s.accept:
				st.linkDown(err)
				continue
			default:
			}
			break
		}
	})
}

// lingerClose lets the peer read what was flushed. Closing a TCP
// connection that still has unread input resets it, and a reset throws away
// what the kernel has not yet sent: the end of the last session's data, or
// the Close that says why. So send FIN, read until the peer closes too
// (bounded by CloseTimeout), and only then close.
func (s *Session) lingerClose() {
	cw, ok := s.c.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	select {
	case <-s.readEnd:
		return // the peer is gone: nothing more to read
	default:
	}
	if cw.CloseWrite() != nil {
		return
	}
	t := time.NewTimer(s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-s.readEnd:
	case <-s.readStop:
		// The read loop is ending the session itself (it may be the
		// caller): nobody else reads the connection, so drain it here.
		s.c.SetReadDeadline(time.Now().Add(s.cfg.CloseTimeout))
		io.Copy(io.Discard, s.c)
	case <-t.C:
	}
}

// Streams returns the channel of streams the peer opens, for a caller that
// selects; Accept is the same with the session's end reported as an error.
func (s *Session) Streams() <-chan *Stream { return s.accept }

// RefuseOpens makes the session refuse every open from now on with reason;
// the streams it has go on.
func (s *Session) RefuseOpens(reason string) {
	s.mu.Lock()
	s.refuse = reason
	s.mu.Unlock()
}

// Drain refuses new opens, closes the streams not yet accepted, and ends
// the session when its last stream ends: at once if it has none.
func (s *Session) Drain() {
	s.mu.Lock()
	s.drain = true
	s.mu.Unlock()
	for {
		select {
		case st := <-s.accept:
			st.Close()
			continue
		default:
		}
		break
	}
	s.closeIfIdle()
}

func (s *Session) closeIfIdle() {
	if s.drained() {
		s.shutdown(fmt.Errorf("rtcp: %s closed", s.cfg.Name), true)
	}
}

// drained reports whether the session is draining and its last stream is
// gone: it ends.
func (s *Session) drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drain && len(s.streams) == 0 && s.err == nil
}

// readerCloseIfIdle is closeIfIdle on the read loop: it only marks the end,
// and the read loop ends the session once the frame is handled. Ending it
// here would wait in lingerClose for the read loop to see the peer's end,
// which it cannot while it waits (CloseTimeout, 5 s, every time).
func (s *Session) readerCloseIfIdle() {
	if s.drained() {
		s.endIdle = true
	}
}

// Accept waits for the next stream the peer opens.
func (s *Session) Accept() (*Stream, error) {
	select {
	case st := <-s.accept:
		return st, nil
	case <-s.done:
		// Prefer a stream that is already waiting.
		select {
		case st := <-s.accept:
			return st, nil
		default:
		}
		return nil, s.Err()
	}
}

// Open opens a stream to the peer, telling it name and addr (who connects).
// Unless the wire's Semantics.OpenerAssignsID is set, it waits for the
// peer's answer; a refusal is returned as a *RefusedError.
func (s *Session) Open(ctx context.Context, name, addr string) (*Stream, error) {
	return s.OpenToken(ctx, name, addr, "")
}

// OpenToken is Open with a token passed to the peer in the open frame.
func (s *Session) OpenToken(ctx context.Context, name, addr, token string) (*Stream, error) {
	return s.OpenExt(ctx, name, addr, token, nil)
}

// OpenExt is OpenToken with ext, the wire adapter's further fields of the
// open frame (Frame.Ext), which the peer's stream gives as Stream.Ext.
func (s *Session) OpenExt(ctx context.Context, name, addr, token string, ext any) (*Stream, error) {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	if s.sem.OpenerAssignsID {
		id, err := s.sem.NextID(name, addr, func(id int64) bool { return s.streams[id] != nil })
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		st := s.newStream(id, name, addr, true)
		st.acked = true
		st.token = token
		if s.sem.AckOpens {
			st.opened = time.Now()
		}
		s.streams[id] = st
		s.enqueue(&Frame{Kind: KindOpen, ID: id, Name: name, Addr: addr, Token: token, Ext: ext})
		s.grantInitial(id)
		s.mu.Unlock()
		return st, nil
	}
	if len(s.pending) >= s.cfg.MaxPendingOpens {
		s.mu.Unlock()
		return nil, fmt.Errorf("rtcp: %d sessions are already being opened on the %s; retry later", len(s.pending), s.cfg.Name)
	}
	p := &pendingOpen{ch: make(chan openResult, 1), name: name, addr: addr, token: token, sent: time.Now()}
	s.pending = append(s.pending, p)
	s.enqueue(&Frame{Kind: KindOpen, Name: name, Addr: addr, Token: token, Ext: ext})
	s.mu.Unlock()
	return s.await(ctx, p)
}

// AwaitSent waits for the answer to the open of Config.Sent and returns
// its stream, as Open does; a refusal is a *RefusedError. Call it once.
func (s *Session) AwaitSent(ctx context.Context) (*Stream, error) {
	if s.early == nil {
		return nil, errors.New("rtcp: AwaitSent on a session with no open sent before it (Config.Sent)")
	}
	return s.await(ctx, s.early)
}

// await waits for the answer to p, or gives p up when ctx ends (a stream
// that opens after that is closed).
func (s *Session) await(ctx context.Context, p *pendingOpen) (*Stream, error) {
	select {
	case r := <-p.ch:
		return r.st, r.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	p.abandoned = true
	s.mu.Unlock()
	select {
	case r := <-p.ch:
		if r.st != nil {
			r.st.Close()
		}
	default:
	}
	return nil, ctx.Err()
}

// RefusedError is the peer's refusal of an Open. It matches ErrRefused,
// and ErrDraining if the peer refused because it is closing.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || target == ErrDraining && e.Reason == DrainReason
}

var (
	// ErrRefused matches a refusal of an open, by whichever side.
	ErrRefused = errors.New("rtcp: refused")
	// ErrDraining matches the refusal of a session that is draining: its
	// side is closing, its streams go on, and it takes no new ones.
	ErrDraining = errors.New("rtcp: the peer is closing and takes no new sessions")
)

// DrainReason is the reason a draining session refuses opens with. It
// crosses the wire (an Ack's R), so that the DP knows the link is
// closing rather than refusing this one client, and tries another.
const DrainReason = "rtcp: the server is closed and accepts no new sessions"

func (s *Session) newStream(id int64, name, addr string, opened bool) *Stream {
	st := newStream(s, id, name, addr)
	if s.cfg.StreamAddrs != nil {
		st.local, st.remote = s.cfg.StreamAddrs(name, addr, opened)
	} else {
		st.local, st.remote = s.c.LocalAddr(), s.c.RemoteAddr()
	}
	if s.cfg.FlowControl {
		st.credit = min(s.cfg.PeerWindow, maxCredit)
		st.win = s.cfg.Window
		st.avail = s.cfg.Window
		st.epoch = time.Now() // the first epoch runs from the open
	}
	return st
}

// readLoop dispatches incoming frames. With flow control it never blocks
// on a stream: every stream's buffer is bounded by its window, so the link
// keeps moving whatever any one reader does. Without, a full stream holds
// it (waitRoom): that is the only way to hold back a peer that does no
// flow control.
func (s *Session) readLoop() {
	defer s.wg.Done()
	defer close(s.readEnd)
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.readFailed(err)
			return
		}
		if err := s.handle(f); err != nil {
			close(s.readStop)
			var pc *PeerClosedError
			if errors.As(err, &pc) {
				// The peer ended the link: it wants no answer.
				s.shutdown(err, false)
				return
			}
			s.enqueue(&Frame{Kind: KindClose, ID: -1, Reason: err.Error(), Abort: true})
			s.shutdown(err, true)
			return
		}
		if f.Rest > 0 {
			if err := s.takeRest(f); err != nil {
				s.readFailed(err)
				return
			}
		}
		if st := s.full; st != nil {
			s.full = nil
			s.waitRoom(st)
		}
		if s.endIdle {
			// The last stream of a draining session is gone: end it from
			// here, so that lingerClose drains the connection itself.
			close(s.readStop)
			s.shutdown(fmt.Errorf("rtcp: %s closed", s.cfg.Name), true)
			return
		}
	}
}

// readFailed ends the session for an error reading the link.
func (s *Session) readFailed(err error) {
	close(s.readStop)
	var pe *ProtocolError
	if errors.As(err, &pe) {
		// Bad bytes from the peer: tell it why before closing.
		if pe.Link == "" {
			pe.Link = s.cfg.Name
		}
		s.enqueue(&Frame{Kind: KindClose, ID: -1, Reason: pe.Error(), Abort: true})
		s.shutdown(pe, true)
		return
	}
	s.shutdown(s.linkError(err), false)
}

func (s *Session) linkError(err error) error {
	select {
	case <-s.done:
		return s.Err()
	default:
	}
	if cause := s.cause.Load(); cause != nil {
		return *cause
	}
	if err == io.EOF {
		// The link ended under its sessions: for them that is no clean
		// end, so it must not match errors.Is(err, io.EOF).
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		// The connection was closed under the session (by its owner
		// shutting down), or a write found the peer's end closed (a
		// net.Pipe says io.ErrClosedPipe for both): for the streams that
		// is a lost link, not their own Close, so it must match neither
		// error, which a relay takes for a deliberate, quiet close.
		return fmt.Errorf("rtcp: %s lost: its connection was closed", s.cfg.Name)
	}
	return fmt.Errorf("rtcp: %s lost: %w", s.cfg.Name, err)
}

// ProtocolError reports a peer that broke the protocol; it ends the link,
// and the peer is told Msg first. A Framer returns one for bytes it cannot
// decode (Link may be left empty: the session fills it in).
type ProtocolError struct {
	Link string
	Msg  string
}

func (e *ProtocolError) Error() string {
	return "rtcp: protocol error on the " + e.Link + ": " + e.Msg
}

func (s *Session) protoErr(format string, args ...any) error {
	return &ProtocolError{Link: s.cfg.Name, Msg: fmt.Sprintf(format, args...)}
}

func (s *Session) handle(f *Frame) error {
	switch f.Kind {
	case KindOpen:
		return s.handleOpen(f)
	case KindAck:
		return s.handleAck(f)
	case KindData:
		if f.Credit < 0 {
			return s.protoErr("negative window grant %d for session %d", f.Credit, f.ID)
		}
		s.mu.Lock()
		st := s.streams[f.ID]
		s.mu.Unlock()
		if st == nil {
			if (len(f.Data) > 0 || f.Rest > 0) && f.ID >= 0 {
				// Either a race with our Close (the peer will ignore this
				// answer) or a peer that sends for a session that never was.
				s.enqueue(&Frame{Kind: KindClose, ID: f.ID, Abort: true,
					Reason: fmt.Sprintf("rtcp: no session %d on this connection (data before Ack, or after Close)", f.ID)})
			}
			return nil
		}
		if f.Credit > 0 {
			st.addCredit(f.Credit)
		}
		if len(f.Data) > 0 {
			st.push(f.Data)
		}
	case KindCloseWrite:
		s.mu.Lock()
		st := s.streams[f.ID]
		s.mu.Unlock()
		if st != nil {
			st.peerCloseWrite()
		}
	case KindClose:
		if f.ID < 0 {
			reason := f.Reason
			if reason == "" {
				reason = "no reason given"
			}
			return &PeerClosedError{Link: s.cfg.Name, Reason: reason}
		}
		s.mu.Lock()
		st := s.streams[f.ID]
		delete(s.streams, f.ID)
		s.mu.Unlock()
		if st != nil {
			st.unanswered("rtcp: the peer closed the session before it was answered")
			if s.sem.AnswerClose {
				// Queued before the stream's reader wakes, so the answer
				// goes out even if the session is closed right after.
				s.enqueueStreamEnd(st, &Frame{Kind: KindClose, ID: f.ID}, true)
			}
			st.peerClose(f.Reason, f.Abort)
			s.readerCloseIfIdle()
		}
	case KindKeepAlive:
		// Its arrival was all it had to say, unless it asks for an answer.
		if f.Ping {
			s.enqueue(&Frame{Kind: KindKeepAlive, ID: f.ID, Pong: true})
		}
	default:
		return s.protoErr("unknown frame kind %v", f.Kind)
	}
	return nil
}

// PeerClosedError is the peer ending the whole link with a reason.
type PeerClosedError struct {
	Link   string
	Reason string
}

func (e *PeerClosedError) Error() string {
	return "rtcp: the peer closed the " + e.Link + ": " + e.Reason
}

func (s *Session) handleOpen(f *Frame) error {
	refuse := func(reason string) {
		if s.sem.OpenerAssignsID {
			s.enqueue(&Frame{Kind: KindClose, ID: f.ID, Reason: reason, Abort: true})
			return
		}
		var a *answerSlot
		if s.orderedAnswers() {
			s.mu.Lock()
			a = s.answerSlotLocked() // after the answers still owed
			s.mu.Unlock()
		}
		s.answer(a, &Frame{Kind: KindAck, ID: -1, Reason: reason}, nil)
	}
	if s.cfg.AcceptBacklog < 0 {
		refuse("rtcp: this side accepts no sessions")
		return nil
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil
	}
	if s.drain || s.refuse != "" {
		reason := s.refuse
		s.mu.Unlock()
		if reason == "" {
			reason = DrainReason
		}
		refuse(reason)
		return nil
	}
	var id int64
	if s.sem.OpenerAssignsID {
		id = f.ID
		if old := s.streams[id]; old != nil {
			// Reusing an open ID closes the old stream (Mihini's rule).
			delete(s.streams, id)
			s.mu.Unlock()
			old.peerClose("rtcp: session number reused by the peer", true)
			s.mu.Lock()
		}
	} else {
		s.nextID++
		if s.nextID > 1<<31-1 {
			s.nextID = 1
		}
		for s.streams[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
	}
	if len(s.accept) >= cap(s.accept) {
		s.mu.Unlock()
		refuse(ErrBacklog.Error())
		return nil
	}
	st := s.newStream(id, f.Name, f.Addr, false)
	st.token, st.ext = f.Token, f.Ext
	s.streams[id] = st
	if s.orderedAnswers() {
		st.answer = s.answerSlotLocked()
	}
	if !s.cfg.ManualAck {
		st.acked = true
		if !s.sem.OpenerAssignsID || s.sem.AckOpens {
			s.enqueue(&Frame{Kind: KindAck, ID: id})
		}
		s.grantInitial(id)
	}
	s.mu.Unlock()
	// The read loop is the only sender, and there was room.
	s.accept <- st
	return nil
}

func (s *Session) handleAck(f *Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sem.OpenerAssignsID && s.sem.AckOpens {
		// The stream is open already; the Ack only confirms it, and
		// times the round trip.
		if st := s.streams[f.ID]; st != nil && !st.opened.IsZero() {
			s.ObserveRTT(time.Since(st.opened))
			st.opened = time.Time{}
		}
		return nil
	}
	if len(s.pending) == 0 {
		return s.protoErr("Ack (X=%d) with no Connect waiting for it", f.ID)
	}
	p := s.pending[0]
	s.pending[0] = nil
	s.pending = s.pending[1:]
	s.ObserveRTT(time.Since(p.sent))
	// Only X = -1 refuses: a plain peer may fill in R on success, and
	// taking that for a refusal would leave its session open forever.
	if f.ID < 0 {
		reason := f.Reason
		if reason == "" {
			reason = "refused with no reason given"
		}
		p.ch <- openResult{err: &RefusedError{Reason: reason}}
		return nil
	}
	if s.streams[f.ID] != nil {
		// p is out of pending: answer it here, or its Open waits on
		// after the session has ended.
		err := s.protoErr("Ack gives session %d, which is already open", f.ID)
		p.ch <- openResult{err: err}
		return err
	}
	if p.abandoned {
		s.enqueue(&Frame{Kind: KindClose, ID: f.ID, Reason: "rtcp: the opener gave up waiting", Abort: true})
		return nil
	}
	st := s.newStream(f.ID, p.name, p.addr, true)
	st.acked = true
	st.token = p.token
	s.streams[f.ID] = st
	s.grantInitial(f.ID)
	p.ch <- openResult{st: st}
	return nil
}

// grantInitial grants a new stream the part of Window above the wire's
// Semantics.InitialWindow.
func (s *Session) grantInitial(id int64) {
	if s.cfg.FlowControl && s.sem.InitialWindow > 0 && s.cfg.Window > s.sem.InitialWindow {
		s.enqueue(&Frame{Kind: KindData, ID: id, Credit: s.cfg.Window - s.sem.InitialWindow})
	}
}

// remove forgets st; it reports whether st was still registered. The
// caller queues the stream's last frame, then calls closeIfIdle.
func (s *Session) remove(st *Stream) bool {
	s.mu.Lock()
	ok := s.streams[st.id] == st
	if ok {
		delete(s.streams, st.id)
	}
	s.mu.Unlock()
	if ok {
		st.releaseWindow()
	}
	return ok
}

// enqueue queues a control frame. It never blocks: control frames are small
// and bounded by what the peer sends, and a peer that stops reading is cut
// off at MaxQueuedFrames.
func (s *Session) enqueue(f *Frame) bool {
	s.qmu.Lock()
	if s.qclose {
		s.qmu.Unlock()
		return false
	}
	if len(s.q) >= s.cfg.MaxQueuedFrames {
		s.qmu.Unlock()
		// Callers may hold s.mu (handleOpen, handleAck, OpenToken): the
		// cause is set without it.
		s.setCause(fmt.Errorf("rtcp: the peer on the %s sends but does not read; link closed", s.cfg.Name))
		s.c.Close() // the read loop ends the session with cause
		return false
	}
	s.q = append(s.q, f)
	s.qmu.Unlock()
	s.wake()
	return true
}

// writeData sends p for stream st, in frames of at most ChunkSize
// bytes (a batch, batchSize, at a time: Stream.Write cuts its bytes so),
// and returns how many of its bytes are
// sent: all of them (with a nil error) once they are queued or have gone
// out, and, if it fails, those that went out before the failure. When
// the stream is flow controlled and has no write deadline, the caller
// writes the frames to the connection itself (a direct write), with one
// Flush for a batch of them: no copy and no hand-off to the write loop, which
// is a goroutine wake-up per frame each way (with credit granted, the
// peer has room for them, so the write does not wait on a stalled
// reader). Otherwise p is queued (enqueueData).
//
// A batch of frames leaves in one write of the connection, which a frame
// of another stream that comes meanwhile waits for: when the link is the
// bottleneck, for as long as the link takes to carry the batch. So a
// stream takes a batch only while it has the link to itself: when the
// last soloRun Data frames on the link were all its own, and no other
// frame waits in the queue. Otherwise it writes the queued frames, then
// one frame of its own, and yields; a small frame of another stream then
// waits for at most the one frame being written when it came.
//
// A write of one frame that finds the link being written queues a copy,
// which the writer takes with its own (combine): many streams' small
// requests go out in one system call. A write of more waits for the link
// instead: its copies would go out ahead of what other streams queue
// next, and in one write. It waits as a queued write does (waitLink): the
// link's peer may have stopped reading, and whoever holds it with it.
//
// A direct write's frame that went out in full is sent even if the write
// that carried it failed (it carried other streams' frames too, combine):
// the peer may read those bytes, so a Write that said otherwise would
// report fewer bytes than it wrote. The failure has ended the link, and
// the next call fails with why (cause).
func (s *Session) writeData(st *Stream, p []byte, deadline <-chan struct{}) (int, error) {
	if len(p) > s.batchSize() {
		return s.writeBatches(st, p, deadline)
	}
	if cause := s.cause.Load(); cause != nil {
		return 0, *cause // a write to the link failed: nothing more goes out
	}
	if !s.cfg.FlowControl || st.wd.IsSet() {
		// A direct write waits for the link, not for the stream's
		// deadline or Close: a writer with a deadline queues, and waits
		// for room in the queue under its deadline. (Without flow
		// control the peer may stop reading the link at any time: TCP's
		// backpressure is its flow control.)
		return s.enqueueChunks(st, p, deadline, true)
	}
	for done := 0; ; {
		q := p[done:]
		if !s.wmu.TryLock() {
			if len(q) <= s.cfg.ChunkSize {
				m, err := s.enqueueChunks(st, q, deadline, false)
				return done + m, err
			}
			if err := s.waitLink(st, deadline); err != nil {
				return done, err
			}
		}
		s.qmu.Lock()
		if s.qclose {
			s.qmu.Unlock()
			s.wmu.Unlock()
			m, err := s.enqueueChunks(st, q, deadline, false)
			return done + m, err // fails with why
		}
		waiting := len(s.q) > 0
		s.qmu.Unlock()

		// Queued frames go first: a direct write never overtakes one.
		var batch []*Frame
		var err error
		if waiting {
			batch, err = s.writeQueued(s.cbatch)
		}
		// The stream may have ended meanwhile: its end is marked before its
		// frame is queued, so if that frame was in the batch just written,
		// no data may follow it.
		s.qmu.Lock()
		werr := st.writeErr()
		s.qmu.Unlock()
		if werr != nil {
			if err == nil {
				err = s.fr.Flush()
			}
			if batch != nil {
				release(batch)
				s.cbatch = batch[:0]
			}
			s.wmu.Unlock()
			if err != nil {
				s.writeFailed(err)
				s.wake()
			}
			return done, werr
		}

		k := len(q)
		if waiting || s.shared(st.id) {
			k = min(k, s.cfg.ChunkSize)
		}
		// s.ends[i] is what the Framer had produced before frame i (sent).
		// (In the session, not here: this frame is under every write of a
		// relay's goroutine, whose stack an idle session keeps at its peak.)
		// s.dframe is zero but for these three fields: a Frame literal
		// assigned to it would be built in a temporary in this frame.
		nf := 0
		s.ends[0] = s.produced()
		for off := 0; off < k && err == nil; nf++ {
			m := min(k-off, s.cfg.ChunkSize)
			s.dframe.Kind, s.dframe.ID, s.dframe.Data = KindData, st.id, q[off:off+m]
			err = s.fr.WriteFrame(&s.dframe)
			s.dframe = Frame{}
			s.ends[nf+1] = s.produced()
			off += m
		}
		prev := s.lastData
		s.noteData(st.id, nf)
		if err == nil && batch == nil && k <= combineMax && prev != st.id {
			batch, err = s.combine()
		}
		if err == nil {
			err = s.fr.Flush()
		}
		if batch != nil {
			release(batch)
			s.cbatch = batch[:0]
		}
		n := k
		if err != nil {
			n = 0
			for i := range nf {
				m := min(k-i*s.cfg.ChunkSize, s.cfg.ChunkSize)
				sent := s.sent(m, s.ends[i], s.ends[i+1])
				n += sent
				if sent < m {
					break
				}
			}
		}
		s.wmu.Unlock()
		if err != nil {
			s.writeFailed(err)
			s.wake()
			if done+n == len(p) {
				return len(p), nil
			}
			return done + n, s.errOr(s.linkError(err))
		}
		s.qmu.Lock()
		more := len(s.q) > 0 || s.qclose
		s.qmu.Unlock()
		if more {
			s.wake()
		}
		if done += n; done == len(p) {
			return done, nil
		}
	}
}

// A linkLock is a mutex whose Lock a caller can give up: a channel of
// one slot, full while it is held. (A Write that waits for the link,
// which its peer may have stopped reading, ends as a net.Conn's Write
// does: at its stream's Close, its deadline, the session's end.)
type linkLock chan struct{}

func (l linkLock) Lock() { l <- struct{}{} }

func (l linkLock) TryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l linkLock) Unlock() {
	select {
	case <-l:
	default:
		panic("mux: unlock of an unlocked linkLock")
	}
}

// waitLink takes wmu for a direct write or a splice of st, or gives up
// as enqueueData does: at st's Close, at the deadline, at the session's
// end. (Not in writeData: its select would be in the frame that every
// write of a relay's goroutine has under it.)
func (s *Session) waitLink(st *Stream, deadline <-chan struct{}) error {
	select {
	case s.wmu <- struct{}{}:
		return nil
	case <-st.closed:
		return net.ErrClosed
	case <-deadline:
		return errTimeout
	case <-s.done:
		return s.errOr(net.ErrClosed)
	}
}

// soloRun is how many Data frames in a row a stream must have put on the
// link before its direct writes take batches again (writeData): after
// another stream's frame, a bulk stream writes a frame at a time for a
// while, for the other may well write again soon (an interactive session,
// a client's next request). On a fast link that while is short.
const soloRun = 4 * maxBatchFrames

// noteData counts n Data frames of stream id written to the Framer. The
// caller holds wmu.
func (s *Session) noteData(id int64, n int) {
	if n == 0 {
		return
	}
	if id != s.lastData {
		s.mixed = s.lastData >= 0
		s.lastData, s.soloFrames = id, 0
	}
	// Counted up to soloRun, all shared asks: a long transfer's count
	// would wrap an int (32-bit: 2^31 frames).
	s.soloFrames = min(s.soloFrames+min(n, soloRun), soloRun)
	owner := id
	if s.mixed && s.soloFrames < soloRun {
		owner = linkShared
	}
	if s.dataOwner.Load() != owner {
		s.dataOwner.Store(owner)
	}
}

// Values of Session.dataOwner that are no stream's ID.
const (
	noDataYet  = -1
	linkShared = -2
)

// shared reports whether another stream than id has written Data on the
// link lately: it wrote the last frame, or fewer than soloRun frames of
// id's have followed its last. The caller holds wmu.
func (s *Session) shared(id int64) bool {
	if s.lastData < 0 {
		return false // the first Data on the link
	}
	return id != s.lastData || s.mixed && s.soloFrames < soloRun
}

// writeBatch is the most bytes one writeData takes, in frames of at most
// ChunkSize and at most maxBatchFrames of them: a relay's whole read
// (256 KiB) goes out in one write of the connection where the Framer
// buffers that much, not in one per frame.
const (
	writeBatch     = 256 << 10
	maxBatchFrames = 8
)

// batchSize is the most bytes a Stream's Write hands writeData at once.
func (s *Session) batchSize() int {
	return max(s.cfg.ChunkSize, min(writeBatch, maxBatchFrames*s.cfg.ChunkSize))
}

// writeBatches is writeData for more than a batch, one writeData a
// batch: SpliceFrom's copies (up to smallSplice bytes) are not cut as
// Stream.Write cuts its bytes, and with a small ChunkSize they are more
// frames than a direct write keeps the ends of (Session.ends).
func (s *Session) writeBatches(st *Stream, p []byte, deadline <-chan struct{}) (int, error) {
	n := 0
	for n < len(p) {
		m, err := s.writeData(st, p[n:n+min(len(p)-n, s.batchSize())], deadline)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// alone reports whether stream id has the link to itself, as a direct
// write judges it (shared), and no other stream's Data is queued or on
// its way to the link. The caller holds qmu.
func (s *Session) alone(id int64) bool {
	for _, o := range [...]int64{s.dataOwner.Load(), s.qsolo, s.tsolo} {
		if o != noDataYet && o != id {
			return false
		}
	}
	return true
}

// enqueueChunks queues p in frames of at most ChunkSize (enqueueData),
// and returns how many of its bytes it queued.
func (s *Session) enqueueChunks(st *Stream, p []byte, deadline <-chan struct{}, fair bool) (int, error) {
	n := 0
	for n < len(p) {
		k := min(len(p)-n, s.cfg.ChunkSize)
		m, err := s.enqueueData(st, p[n:n+k], deadline, fair)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// produced is what the Framer has produced in all, if it counts (a
// Counter), else 0. The caller holds wmu.
func (s *Session) produced() int64 {
	if s.count == nil {
		return 0
	}
	produced, _ := s.count.Counts()
	return produced
}

// sent returns how many of the n Data bytes of a frame the connection
// took, when a write failed after the Framer produced the frame's bytes
// start to end: all n if it took the frame's last byte; on a wire that
// carries Data as it is after a header (a DataHeaderWriter, whose peer
// may hand on each byte as it arrives), the Data bytes it took; otherwise
// none, for the peer takes a frame only once it is whole. A Framer that
// does not count (not a Counter) is taken to have sent none. The caller
// holds wmu.
func (s *Session) sent(n int, start, end int64) int {
	if s.count == nil || end-start < int64(n) {
		return 0 // not counted, or the frame was never produced whole
	}
	_, written := s.count.Counts()
	if written >= end {
		return n
	}
	if _, ok := s.fr.(DataHeaderWriter); ok {
		return int(min(max(written-(end-int64(n)), 0), int64(n)))
	}
	return 0
}

// combineMax is the largest frame a direct write holds back in combine.
// Above it the system call is a small part of the frame's cost.
const combineMax = 16 << 10

// combine lets the goroutines that are ready to run go first while the
// caller, in a direct write, holds wmu with its own small frame buffered
// and not yet flushed. Those that write meanwhile (readers of other
// connections that the same poll woke: many clients' small requests) find
// wmu held and queue their frames, and the caller writes them with its
// own: one system call for all, and no hand-off to the write loop. The
// caller flushes, then gives the frames back with release.
//
// The yield is not free even with nothing else ready to run:
// runtime.Gosched wakes an idle thread to look for work (a futex) and
// polls the network, and for one session's echo through a DP that was
// a sixth of the DP's CPU and a thread switch per message. So a direct
// write combines only when the last Data frame on the link was another
// stream's: a stream that writes alone never yields, many clients'
// requests (each the first of its stream in a row) still do.
func (s *Session) combine() ([]*Frame, error) {
	s.combines++
	s.qmu.Lock()
	s.combining = true
	s.qmu.Unlock()
	runtime.Gosched()
	s.qmu.Lock()
	s.combining = false
	n := len(s.q)
	s.qmu.Unlock()
	if n == 0 {
		return nil, nil
	}
	return s.writeQueued(s.cbatch)
}

// writeFailed records that writing the connection failed and closes it;
// the read loop then ends the session with the cause. (It must not call
// shutdown: a Close that is flushing holds the session's once while it
// waits for the write loop.)
func (s *Session) writeFailed(err error) {
	s.setCause(s.linkError(err))
	s.c.Close()
}

// setCause records why the connection is being closed from inside, if
// nothing has yet.
func (s *Session) setCause(err error) { s.cause.CompareAndSwap(nil, &err) }

// enqueueData queues a copy of p for stream st, waiting while too much is
// queued, and returns len(p): queued bytes count as sent, as bytes in a
// socket's send buffer do. It fails on a passed deadline, a closed stream
// or session.
//
// The write loop writes what is queued in one go, which a frame queued
// meanwhile waits for; so with fair set (a stream whose Writes always
// queue: no flow control, or a write deadline) a stream queues as a
// direct write writes (writeData): while it has the link to itself, at
// most half a batch (batchSize) queued, so that what the writer is
// writing and what waits for it make at most a batch; while it shares
// the link, at most a frame's worth (ChunkSize) queued or being written.
// A small frame of another stream then waits for at most the frame being
// written when it came. The waits, for room in the queue or (sharing) for
// the link's lock, which whoever took its last frame holds until that
// frame is out, end as before at the deadline, Close and session end:
// backpressure. The waiter holds no lock while it waits. (A queue of 1 MiB, as before, cost no less CPU per byte than
// half a batch: BenchmarkNoFlowControlBulk.)
func (s *Session) enqueueData(st *Stream, p []byte, deadline <-chan struct{}, fair bool) (int, error) {
	for {
		s.qmu.Lock()
		if s.qclose {
			s.qmu.Unlock()
			return 0, s.errOr(net.ErrClosed)
		}
		taken := st.qgen <= s.qtaken // none of its frames is in the queue
		room := s.qbytes < maxQueuedBytes
		if room && fair {
			if s.alone(st.id) {
				// Alone: whatever left the queue is not counted.
				if taken {
					st.qsent = 0
				}
				room = st.qsent < s.batchSize()/2
			} else if st.qsent > 0 && st.qsent+len(p) > s.cfg.ChunkSize {
				if taken {
					// Its last frame may still be being written: whoever
					// took it holds wmu until it has.
					gen := st.qgen
					s.qmu.Unlock()
					if err := s.waitLink(st, deadline); err != nil {
						return 0, err
					}
					s.wmu.Unlock()
					s.qmu.Lock()
					if st.qgen == gen {
						st.qsent = 0
					}
					s.qmu.Unlock()
					continue
				}
				room = false
			}
		}
		if room {
			if err := st.writeErr(); err != nil {
				s.qmu.Unlock()
				return 0, err
			}
			s.q = append(s.q, &Frame{Kind: KindData, ID: st.id, Data: getBuf(p)})
			s.qbytes += len(p)
			st.qgen = s.qtaken + 1
			st.qsent += len(p)
			if s.qsolo == noDataYet {
				s.qsolo = st.id
			} else if s.qsolo != st.id {
				s.qsolo = linkShared
			}
			combining := s.combining
			s.qmu.Unlock()
			if !combining {
				s.wake()
			}
			return len(p), nil
		}
		space := s.qspace
		s.qmu.Unlock()
		select {
		case <-space:
		case <-deadline:
			return 0, errTimeout
		case <-st.closed:
			return 0, net.ErrClosed
		case <-s.done:
			return 0, s.errOr(net.ErrClosed)
		}
	}
}

// enqueueStreamEnd queues a stream's CloseWrite or Close frame behind the
// stream's data, and marks the stream so no more data follows it.
func (s *Session) enqueueStreamEnd(st *Stream, f *Frame, full bool) {
	s.qmu.Lock()
	st.mu.Lock()
	if full {
		st.endSent = true
	}
	st.wclosed = true
	st.mu.Unlock()
	s.qmu.Unlock()
	s.enqueue(f)
}

func (s *Session) errOr(def error) error {
	if err := s.Err(); err != nil {
		return err
	}
	return def
}

func (s *Session) wake() {
	select {
	case s.qwake <- struct{}{}:
	default:
	}
}

func (s *Session) writeLoop() {
	defer s.wg.Done()
	defer close(s.qdone)
	var hb heartbeat
	defer hb.stop()
	var batch []*Frame
	for {
		s.qmu.Lock()
		for len(s.q) == 0 {
			if s.qclose {
				s.qmu.Unlock()
				// Let a direct write in progress finish first.
				s.wmu.Lock()
				s.wmu.Unlock()
				return
			}
			s.qmu.Unlock()
			select {
			case <-s.qwake:
			case <-hb.tick(time.Duration(s.keepAlive.Load())):
				s.qmu.Lock()
				if !s.qclose {
					s.q = append(s.q, &Frame{Kind: KindKeepAlive})
				}
				continue
			}
			s.qmu.Lock()
		}
		s.qmu.Unlock()

		s.wmu.Lock()
		var err error
		batch, err = s.writeQueued(batch)
		if err == nil {
			err = s.fr.Flush()
		}
		s.wmu.Unlock()
		release(batch)
		if err != nil {
			s.writeFailed(err)
			s.qmu.Lock()
			for _, f := range s.q {
				if f.Kind == KindData && f.Data != nil {
					putBuf(f.Data)
				}
			}
			s.q = nil
			s.qmu.Unlock()
			return
		}
	}
}

// writeQueued writes the queued frames (without Flush), using batch for
// the list. The caller holds wmu, flushes, and then gives the frames'
// buffers back with release: a Framer may hold on to Data until Flush.
func (s *Session) writeQueued(batch []*Frame) ([]*Frame, error) {
	s.qmu.Lock()
	batch, s.q = s.q, batch[:0]
	s.qbytes = 0
	s.qtaken++
	s.tsolo, s.qsolo = s.qsolo, noDataYet
	close(s.qspace)
	s.qspace = make(chan struct{})
	s.qmu.Unlock()
	var err error
	for _, f := range batch {
		if err == nil {
			err = s.fr.WriteFrame(f)
			if f.Kind == KindData && len(f.Data) > 0 {
				s.noteData(f.ID, 1)
			}
		}
	}
	return batch, err
}

// release gives back the Data buffers of written frames and clears batch.
func release(batch []*Frame) {
	for i, f := range batch {
		if f.Kind == KindData && f.Data != nil {
			putBuf(f.Data)
		}
		batch[i] = nil
	}
}

// Queued Data is copied into pooled buffers: small ones for small frames
// (a request of a few bytes, queued behind another stream's write, does
// not take 256 KiB), big ones for the rest.
const (
	poolBufSize  = 256 << 10
	smallBufSize = 4 << 10
)

var (
	bufPool      = sync.Pool{New: func() any { b := make([]byte, poolBufSize); return &b }}
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
)

func getBuf(p []byte) []byte {
	var b []byte
	switch {
	case len(p) <= smallBufSize:
		b = *smallBufPool.Get().(*[]byte)
	case len(p) <= poolBufSize:
		b = *bufPool.Get().(*[]byte)
	default:
		return append([]byte(nil), p...)
	}
	return b[:copy(b[:len(p)], p)]
}

func putBuf(b []byte) {
	switch cap(b) {
	case smallBufSize:
		b = b[:cap(b)]
		smallBufPool.Put(&b)
	case poolBufSize:
		b = b[:cap(b)]
		bufPool.Put(&b)
	}
}
