// Package mux is rtcp's one session layer for message-framed wires: it runs
// many streams over one link, each a full net.Conn, with per-stream credit
// windows so that a stalled stream never stalls the link, bounded buffers,
// half-close, and an error (never io.EOF) when the link dies under a stream.
//
// A wire adapter supplies a Framer, which turns the wire's messages into
// Frames and back; everything else (ordering, flow control, deadlines,
// lifetimes) lives here once for every wire.
//
// What a session needs to know splits in two. How the wire works is the
// Framer's to say: a Framer that is a Wire returns its Semantics (who
// picks a stream's ID, whether an open is acknowledged, the window a
// stream starts with, whether a Close is a handshake), which New reads
// once; a plain Framer has Plan5's, the zero Semantics. Config holds the
// rest, which the caller chooses or has agreed with the peer in a
// handshake before the session starts: limits (windows, buffers, budgets,
// timeouts, backlogs), what the handshake settled (FlowControl,
// PeerWindow, HalfClose, ChunkSize), and behaviour such as ManualAck,
// StreamAddrs, KeepAlive and Logger.
package mux

import "strconv"

// Kind says what a Frame does.
type Kind uint8

// The frame kinds.
const (
	// KindOpen asks the peer for a new stream. Name and Addr describe who is
	// connecting (or whom to connect, from a client). If the session's
	// Config.OpenerAssignsID is set, ID is the new stream's; otherwise the
	// acceptor picks the ID and answers with KindAck.
	KindOpen Kind = iota + 1
	// KindAck answers a KindOpen with the new stream's ID, or refuses it
	// with an ID below 0 and the reason in Reason.
	KindAck
	// KindData carries Data for stream ID and grants Credit more bytes of
	// send window to the receiver; either may be empty.
	KindData
	// KindCloseWrite ends the sender's direction of stream ID (half-close).
	KindCloseWrite
	// KindClose ends stream ID in both directions. With Abort set it was cut
	// off by an error, told in Reason. An ID below 0 ends the whole link.
	KindClose
	// KindKeepAlive carries nothing: a session sends one every
	// Config.KeepAlive while it has nothing else to send, so that the peer
	// can tell a quiet link from a dead one (see IdleReader). A Framer
	// writes it as its wire's heartbeat; ReadFrame need not return it.
	// On a wire whose heartbeat must be answered (a yamux ping), ReadFrame
	// returns the peer's with Ping set and ID its opaque value; the
	// session answers with a KindKeepAlive with Pong set and the same ID.
	KindKeepAlive
)

func (k Kind) String() string {
	switch k {
	case KindOpen:
		return "Open"
	case KindAck:
		return "Ack"
	case KindData:
		return "Data"
	case KindCloseWrite:
		return "CloseWrite"
	case KindClose:
		return "Close"
	case KindKeepAlive:
		return "KeepAlive"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// A Frame is one message of the session layer.
type Frame struct {
	Kind   Kind
	ID     int64
	Name   string // KindOpen
	Addr   string // KindOpen
	Token  string // KindOpen: an opaque value the adapter passes along
	Ext    any    // KindOpen: the adapter's further fields, passed along as they are
	Reason string // KindAck (refusal), KindClose
	Abort  bool   // KindClose
	Data   []byte // KindData
	Rest   int    // KindData: bytes of Data still on the link (a DataSplitter's)
	Credit int    // KindData
	Ping   bool   // KindKeepAlive: the peer wants an answer
	Pong   bool   // KindKeepAlive: the answer to a Ping
}

// Semantics says how a wire works, as fixed by its format rather than
// chosen by the caller. The zero Semantics is Plan5's: the acceptor picks
// each stream's ID and answers the open with KindAck, and a Close is not
// answered.
type Semantics struct {
	// OpenerAssignsID makes Open pick the stream ID (NextID) and return at
	// once, with no KindAck on the wire; the peer refuses with KindClose.
	OpenerAssignsID bool
	// NextID returns a free stream ID for Open when OpenerAssignsID is set;
	// it is called with the session's lock held, the open's name and addr
	// (a wire whose ID means something, such as tcpipe's port, derives it
	// from them) and the set of IDs in use. It belongs to one session.
	NextID func(name, addr string, inUse func(int64) bool) (int64, error)

	// AckOpens makes an acceptor answer each open it accepts with a
	// KindAck carrying the stream's ID even when OpenerAssignsID is set
	// (yamux's ACK flag); Acks received for such streams are ignored.
	AckOpens bool

	// InitialWindow is the window every new stream has on the wire before
	// any grant (yamux: 256 KiB), when it is not Config.Window. If
	// Config.Window is larger, the session grants each new stream the
	// difference as it opens or accepts it.
	InitialWindow int

	// AnswerClose makes the wire's Close a handshake (Mihini): a Close from
	// the peer for an open stream is answered with a Close, so that both
	// ends learn when the stream's ID is free again.
	AnswerClose bool
}

// A Wire is a Framer that says how its wire works. New calls Semantics
// once; a Framer that is not a Wire has the zero Semantics, so a Framer
// that wraps a Wire must be one too (embed the Wire, not a Framer).
type Wire interface {
	Framer
	Semantics() Semantics
}

// A Framer reads and writes Frames on one connection in a wire's own format.
// The Session calls ReadFrame from one goroutine and WriteFrame and Flush
// from another.
type Framer interface {
	// ReadFrame returns the next frame; it and its Data are valid until the
	// next call. An error ends the link.
	ReadFrame() (*Frame, error)
	// WriteFrame writes f, possibly into a buffer. It must not keep f
	// once it returns (the session reuses it); f.Data stays valid until
	// Flush.
	WriteFrame(f *Frame) error
	// Flush writes what WriteFrame buffered.
	Flush() error
}

// A Counter is a Framer that counts the bytes it puts out. When a write
// to the connection fails, the session learns from it whether a Stream's
// frame went out in full before the failure, so that the Stream's Write
// counts it as written: a peer may read it, and a Write must not report
// fewer bytes than the peer can receive. A Framer that is not a Counter
// has its frames in a failed write counted as not sent.
type Counter interface {
	Framer
	// Counts returns how many bytes WriteFrame has produced in all (a
	// frame's counted once WriteFrame has encoded it, whether or not it
	// has reached the connection, and even if WriteFrame then fails),
	// and how many of them the connection has taken. The session calls
	// it from the goroutine that writes frames.
	Counts() (produced, written int64)
}
