// Package yamuxlink runs rtcp's session layer (internal/mux) over the yamux
// wire, so that one side may be hashicorp/yamux: a mux.Framer for yamux
// frames and the mux.Config the wire needs.
//
// The mapping, in short (protocol/yamux/SPEC.md has it in full):
//
//	mux                        yamux
//	Open{ID}                   WindowUpdate SYN (a grant that follows joins it)
//	Ack{ID}                    WindowUpdate ACK (likewise)
//	Data{Data}                 Data
//	Data{Credit}               WindowUpdate, delta Credit
//	CloseWrite, Close          WindowUpdate FIN (once per stream)
//	Close{Abort}               WindowUpdate RST
//	Close{ID < 0}              GoAway
//	KeepAlive / Pong           Ping SYN / Ping ACK
//
// Name, Addr and Token of an Open are not carried: rtcp says who connects
// inside the stream.
package yamuxlink

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"

	"rtcp/internal/mux"
	"rtcp/internal/sockio"
	"rtcp/protocol/yamux"
)

const (
	// DefaultWindow is a fixed receive window for tests of this package,
	// as hashicorp's MaxStreamWindowSize would be. rtcp's links start at
	// yamux's 256 KiB instead and let the window grow (mux.Config's
	// MaxWindow), because a fixed window w caps a stream at w per round
	// trip and makes every stalled reader cost w.
	DefaultWindow = 4 << 20

	// ChunkSize is the most Data bytes one frame carries from this side:
	// the size of the session's pooled write buffers.
	ChunkSize = 256 << 10
)

// writeBufSize bounds the bytes the Framer buffers before a write: more
// frames than fit go out on their own (a batch of control frames, say).
const writeBufSize = 64 << 10

// largeData is the Data payload from which WriteFrame writes the payload
// straight from the caller's buffer (with what is pending, in one writev)
// instead of copying it into the write buffer.
const largeData = 16 << 10

// Framer maps yamux frames to mux frames and back. The session calls
// ReadFrame from one goroutine, and WriteFrame and Flush from one goroutine
// at a time.
//
// Writing never keeps a frame's Data after WriteFrame returns: a small
// frame is copied into the write buffer (Flush writes it), and a Data
// payload of 16 KiB or more is written at once, after what is buffered, in
// one writev on a TCP connection.
type Framer struct {
	// Reading.
	r     *yamux.Reader
	src   io.Reader
	split bool         // SplitData
	q     [5]mux.Frame // what one yamux frame says, handed out in order
	qi    int
	qn    int

	// Writing.
	w       io.Writer
	wbuf    []byte
	grantAt int // offset in wbuf of an Open's or Ack's header a grant may join; -1: none
	pings   uint32
	vec     [2][]byte
	nb      net.Buffers
	// handed is how many bytes of frames went to w (taken or not), and
	// written how many of them w took (Counts).
	handed, written int64

	// fin tracks the streams open on the wire, so that a FIN goes out
	// once per stream: the session may send CloseWrite and then Close,
	// and hashicorp/yamux takes a second FIN on a stream it has not closed
	// itself for a protocol error and ends the whole session.
	mu  sync.Mutex
	fin map[uint32]finState

	client bool // this side is yamux's client: its stream IDs are odd
}

type finState uint8

const (
	sentFIN finState = 1 << iota
	gotFIN
)

// NewFramer returns a Framer reading frames from r and writing them to w.
// It refuses (with a *mux.ProtocolError) Data frames longer than maxData:
// pass the window this side grants (Config's window), which is the most a
// peer may have in flight on a stream and so the longest frame it can send
// (hashicorp/yamux sends a Write of any size as one frame, up to its whole
// send window). maxData <= 0 means yamux's initial window, 256 KiB.
// client says which end of the link this side is: yamux's client opens
// streams with odd IDs, its server with even ones.
func NewFramer(r io.Reader, w io.Writer, maxData int, client bool) *Framer {
	return &Framer{
		client:  client,
		r:       yamux.NewReader(r, maxData),
		src:     r,
		w:       sockio.WriterOf(w),
		wbuf:    make([]byte, 0, writeBufSize),
		grantAt: -1,
		fin:     make(map[uint32]finState),
	}
}

// ResetReason is the error text of a stream the peer reset (RST): yamux
// carries no reason.
const ResetReason = "rtcp: the peer reset the session (yamux RST)"

// ReadFrame returns the next session-layer frame. One yamux frame may say
// several things (open a stream, grant it credit, carry data and end it);
// they come out one per call, in that order.
func (fr *Framer) ReadFrame() (*mux.Frame, error) {
	for fr.qi == fr.qn {
		if err := fr.decode(); err != nil {
			return nil, err
		}
	}
	f := &fr.q[fr.qi]
	fr.qi++
	return f, nil
}

// SplitData lets ReadFrame leave the bytes of a long Data frame on the
// connection for the session to take itself (mux.DataSplitter): spliced,
// for a stream relayed into a TCP socket. Call it before the session
// starts, and only when the Framer reads the connection the session runs
// on, directly or through readers that report what they buffer (a
// *bufio.Reader, a *mux.IdleReader).
func (fr *Framer) SplitData() { fr.split = true }

// ReadRest reads up to len(p) bytes of the rest of a split Data frame.
func (fr *Framer) ReadRest(p []byte) (int, error) { return fr.r.ReadRest(p) }

// Direct reports whether the rest of a split Data frame is the next bytes
// on the connection: nothing of it is buffered on the way.
func (fr *Framer) Direct() bool {
	if fr.r.Buffered() > 0 {
		return false
	}
	switch src := fr.src.(type) {
	case interface{ Buffered() int }:
		return src.Buffered() == 0
	case net.Conn, *mux.IdleReader:
		return true
	}
	return false
}

// TookRest records n bytes of the rest of a split Data frame taken
// straight from the connection, and err, if that failed.
func (fr *Framer) TookRest(n int, err error) error {
	if n > 0 {
		if terr := fr.r.Took(n); terr != nil {
			return terr
		}
	}
	if err != nil {
		return fr.r.Fail(err)
	}
	return nil
}

func (fr *Framer) push(f mux.Frame) {
	fr.q[fr.qn] = f
	fr.qn++
}

// decode reads one yamux frame into the queue; it may queue nothing (an
// empty Data frame with no flags).
func (fr *Framer) decode() error {
	fr.qi, fr.qn = 0, 0
	var (
		h    yamux.Header
		p    []byte
		rest int
		err  error
	)
	if fr.split {
		h, p, rest, err = fr.r.ReadFrameSplit()
	} else {
		h, p, err = fr.r.ReadFrame()
	}
	if err != nil {
		if errors.Is(err, yamux.ErrVersion) || errors.Is(err, yamux.ErrType) || errors.Is(err, yamux.ErrTooLong) {
			// The session tells the peer (a GoAway) before it closes.
			return &mux.ProtocolError{Msg: err.Error()}
		}
		return err
	}
	switch h.Type {
	case yamux.TypeData, yamux.TypeWindowUpdate:
		if h.StreamID == 0 {
			return &mux.ProtocolError{Msg: fmt.Sprintf("yamux: %v for stream 0, which names the session, not a stream", h)}
		}
		id := int64(h.StreamID)
		if h.Flags&yamux.FlagSYN != 0 {
			fr.track(h.StreamID)
			fr.push(mux.Frame{Kind: mux.KindOpen, ID: id})
		}
		if h.Flags&yamux.FlagACK != 0 {
			fr.push(mux.Frame{Kind: mux.KindAck, ID: id})
		}
		if len(p) > 0 || rest > 0 {
			fr.push(mux.Frame{Kind: mux.KindData, ID: id, Data: p, Rest: rest})
		}
		if h.Type == yamux.TypeWindowUpdate && h.Length > 0 {
			// At most an int's worth: 32-bit systems hold less than a grant.
			fr.push(mux.Frame{Kind: mux.KindData, ID: id, Credit: int(min(uint64(h.Length), math.MaxInt))})
		}
		if h.Flags&yamux.FlagFIN != 0 {
			fr.finished(h.StreamID, gotFIN)
			fr.push(mux.Frame{Kind: mux.KindCloseWrite, ID: id})
		}
		if h.Flags&yamux.FlagRST != 0 {
			fr.forget(h.StreamID)
			fr.push(mux.Frame{Kind: mux.KindClose, ID: id, Abort: true, Reason: ResetReason})
		}
	case yamux.TypePing:
		if h.Flags&yamux.FlagSYN != 0 {
			fr.push(mux.Frame{Kind: mux.KindKeepAlive, Ping: true, ID: int64(h.Length)})
		} else {
			fr.push(mux.Frame{Kind: mux.KindKeepAlive})
		}
	case yamux.TypeGoAway:
		fr.push(mux.Frame{Kind: mux.KindClose, ID: -1,
			Reason: fmt.Sprintf("the peer ended the yamux session (go away, code %d: %s)", h.Length, yamux.GoAwayText(h.Length))})
	}
	return nil
}

// track notes a stream opened on the wire (by either side).
func (fr *Framer) track(id uint32) {
	fr.mu.Lock()
	fr.fin[id] = 0
	fr.mu.Unlock()
}

// finished notes a FIN sent or received on stream id. It reports false
// for a FIN this side has already sent: the caller drops it.
func (fr *Framer) finished(id uint32, how finState) bool {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	st, ok := fr.fin[id]
	if !ok {
		return true // not a stream we know: let the peer judge
	}
	if st&how != 0 {
		return how != sentFIN
	}
	st |= how
	if st == sentFIN|gotFIN {
		delete(fr.fin, id) // closed both ways: the stream is over on the wire
	} else {
		fr.fin[id] = st
	}
	return true
}

// forget drops a stream reset by either side.
func (fr *Framer) forget(id uint32) {
	fr.mu.Lock()
	delete(fr.fin, id)
	fr.mu.Unlock()
}

// WriteFrame writes f as yamux frames. Small frames go into a buffer that
// Flush writes; a large Data payload is written at once, together with
// what is buffered, in one writev, so that it is never copied and never
// kept after WriteFrame returns.
func (fr *Framer) WriteFrame(f *mux.Frame) error {
	switch f.Kind {
	case mux.KindOpen:
		id, err := streamID(f)
		if err != nil {
			return err
		}
		fr.track(id)
		return fr.control(yamux.TypeWindowUpdate, yamux.FlagSYN, id, 0, true)
	case mux.KindAck:
		if f.ID < 0 {
			// A refusal without a stream ID: the session refuses yamux
			// opens with Close{Abort} (an RST), never with this.
			return nil
		}
		id, err := streamID(f)
		if err != nil {
			return err
		}
		return fr.control(yamux.TypeWindowUpdate, yamux.FlagACK, id, 0, true)
	case mux.KindData:
		id, err := streamID(f)
		if err != nil {
			return err
		}
		if len(f.Data) > 0 {
			if err := fr.data(id, f.Data); err != nil {
				return err
			}
		}
		if f.Credit < 0 {
			return fmt.Errorf("yamuxlink: negative window grant %d for stream %d", f.Credit, id)
		}
		return fr.grant(id, f.Credit)
	case mux.KindCloseWrite:
		id, err := streamID(f)
		if err != nil {
			return err
		}
		return fr.writeFIN(id)
	case mux.KindClose:
		if f.ID < 0 {
			return fr.control(yamux.TypeGoAway, 0, 0, goAwayCode(f), false)
		}
		id, err := streamID(f)
		if err != nil {
			return err
		}
		if f.Abort {
			fr.forget(id)
			return fr.control(yamux.TypeWindowUpdate, yamux.FlagRST, id, 0, false)
		}
		// yamux has no full close: a FIN, and the session answers data
		// that still comes with an RST.
		return fr.writeFIN(id)
	case mux.KindKeepAlive:
		if f.Pong {
			return fr.control(yamux.TypePing, yamux.FlagACK, 0, uint32(f.ID), false)
		}
		fr.pings++
		return fr.control(yamux.TypePing, yamux.FlagSYN, 0, fr.pings, false)
	}
	return fmt.Errorf("yamuxlink: cannot write frame kind %v", f.Kind)
}

func streamID(f *mux.Frame) (uint32, error) {
	if f.ID <= 0 || f.ID > math.MaxUint32 {
		return 0, fmt.Errorf("yamuxlink: %v for stream %d, outside yamux's 1..%d", f.Kind, f.ID, uint32(math.MaxUint32))
	}
	return uint32(f.ID), nil
}

// goAwayCode is the GoAway code for a session ending with f: normal for a
// plain close, protocol error when the session blames the peer's bytes
// (a mux.ProtocolError's text), internal error for any other abort.
func goAwayCode(f *mux.Frame) uint32 {
	switch {
	case !f.Abort:
		return yamux.GoAwayNormal
	case strings.Contains(f.Reason, "protocol error"):
		return yamux.GoAwayProtocolError
	}
	return yamux.GoAwayInternalError
}

func (fr *Framer) writeFIN(id uint32) error {
	if !fr.finished(id, sentFIN) {
		return nil
	}
	return fr.control(yamux.TypeWindowUpdate, yamux.FlagFIN, id, 0, false)
}

// control buffers a header-only frame. With joinable set, a window grant
// for the same stream written right after it joins it, as yamux does
// itself (SYN and ACK carry the window above 256 KiB).
func (fr *Framer) control(t yamux.Type, flags yamux.Flags, id, length uint32, joinable bool) error {
	if err := fr.room(yamux.HeaderLen); err != nil {
		return err
	}
	fr.grantAt = -1
	if joinable {
		fr.grantAt = len(fr.wbuf)
	}
	fr.wbuf = yamux.Header{Type: t, Flags: flags, StreamID: id, Length: length}.Append(fr.wbuf)
	return nil
}

// grant writes a window update of n bytes for stream id, joining it to the
// Open or Ack just written for the stream if it can.
func (fr *Framer) grant(id uint32, n int) error {
	for n > 0 {
		if at := fr.grantAt; at >= 0 && at+yamux.HeaderLen == len(fr.wbuf) {
			h, _ := yamux.ParseHeader(fr.wbuf[at:])
			if h.StreamID == id && h.Length == 0 {
				k := int(min(uint64(n), math.MaxUint32))
				h.Length = uint32(k)
				h.Append(fr.wbuf[:at])
				fr.grantAt = -1
				n -= k
				continue
			}
		}
		k := int(min(uint64(n), math.MaxUint32))
		if err := fr.control(yamux.TypeWindowUpdate, 0, id, uint32(k), false); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// data writes a Data frame: copied into the buffer if it is small, written
// at once with what is buffered if it is large.
func (fr *Framer) data(id uint32, p []byte) error {
	if uint64(len(p)) > math.MaxUint32 {
		return fmt.Errorf("yamuxlink: %d data bytes for stream %d, more than a frame holds", len(p), id)
	}
	h := yamux.Header{Type: yamux.TypeData, StreamID: id, Length: uint32(len(p))}
	fr.grantAt = -1
	if len(p) < largeData {
		if err := fr.room(yamux.HeaderLen + len(p)); err != nil {
			return err
		}
		fr.wbuf = append(h.Append(fr.wbuf), p...)
		return nil
	}
	fr.wbuf = h.Append(fr.wbuf)
	fr.vec = [2][]byte{fr.wbuf, p}
	fr.nb = fr.vec[:]
	fr.handed += int64(len(fr.wbuf) + len(p))
	var n int64
	var err error
	if wv, ok := fr.w.(interface{ Writev([][]byte) (int64, error) }); ok {
		n, err = wv.Writev(fr.nb)
	} else {
		n, err = fr.nb.WriteTo(fr.w)
	}
	fr.written += n
	fr.vec = [2][]byte{} // keep no reference to the caller's buffer
	fr.nb = nil
	fr.wbuf = fr.wbuf[:0]
	return err
}

// WriteDataHeader writes the header of a Data frame of n bytes for
// stream id; the caller puts the n bytes on the connection right after
// Flush (mux.Stream.SpliceFrom moves them there in the kernel).
func (fr *Framer) WriteDataHeader(id int64, n int) error {
	sid, err := streamID(&mux.Frame{ID: id})
	if err != nil {
		return err
	}
	if n <= 0 || uint64(n) > math.MaxUint32 {
		return fmt.Errorf("yamuxlink: a Data frame of %d bytes for stream %d", n, sid)
	}
	if err := fr.room(yamux.HeaderLen); err != nil {
		return err
	}
	fr.grantAt = -1
	fr.wbuf = yamux.Header{Type: yamux.TypeData, StreamID: sid, Length: uint32(n)}.Append(fr.wbuf)
	return nil
}

// room makes room for n more bytes in the write buffer, writing what it
// holds if it is full.
func (fr *Framer) room(n int) error {
	if len(fr.wbuf)+n <= cap(fr.wbuf) || len(fr.wbuf) == 0 {
		return nil
	}
	return fr.Flush()
}

// Flush writes what WriteFrame buffered.
func (fr *Framer) Flush() error {
	fr.grantAt = -1
	if len(fr.wbuf) == 0 {
		return nil
	}
	fr.handed += int64(len(fr.wbuf))
	n, err := fr.w.Write(fr.wbuf)
	fr.written += int64(n)
	fr.wbuf = fr.wbuf[:0]
	return err
}

// Counts returns how many bytes WriteFrame has produced, buffered or
// not, and how many of them the connection took (mux.Counter). Bytes the
// session splices after a header (WriteDataHeader) are in neither.
func (fr *Framer) Counts() (produced, written int64) {
	return fr.handed + int64(len(fr.wbuf)), fr.written
}

// Config returns the session configuration for a yamux link: flow control
// with yamux's 256 KiB initial windows, window granted to each stream (the
// session grants the part above 256 KiB as the stream opens; at least
// 256 KiB; DefaultWindow is what rtcp uses) and half-close. How the wire
// picks and acknowledges stream IDs is the Framer's (Semantics).
func Config(window int) mux.Config {
	window = max(window, yamux.InitialWindow)
	return mux.Config{
		FlowControl: true,
		Window:      window,
		PeerWindow:  yamux.InitialWindow,
		HalfClose:   true,
		ChunkSize:   ChunkSize,
	}
}

// Semantics says how yamux works: stream IDs are picked by the opener
// (odd for the client, even for the server) and acknowledged with ACK,
// and every stream starts with a 256 KiB window. mux.New calls it once
// per session: its NextID counts that session's IDs.
func (fr *Framer) Semantics() mux.Semantics {
	return mux.Semantics{
		OpenerAssignsID: true,
		NextID:          nextIDs(fr.client),
		AckOpens:        true,
		InitialWindow:   yamux.InitialWindow,
	}
}

// ErrStreamsExhausted is returned by Open when every stream ID of this
// side is in use.
var ErrStreamsExhausted = errors.New("rtcp: every yamux stream ID of this side is in use; close some sessions")

// nextIDs returns a NextID giving odd IDs (client) or even ones (server),
// in turn, skipping IDs in use, and starting over below 2^32.
func nextIDs(client bool) func(name, addr string, inUse func(int64) bool) (int64, error) {
	first := uint32(2)
	if client {
		first = 1
	}
	var mu sync.Mutex // the session holds its lock, but Semantics may be shared by mistake
	next := first
	return func(_, _ string, inUse func(int64) bool) (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		for range uint32(1 << 31) {
			id := next
			next += 2
			if next < id { // wrapped past 2^32
				next = first
			}
			if !inUse(int64(id)) {
				return int64(id), nil
			}
		}
		return 0, ErrStreamsExhausted
	}
}
