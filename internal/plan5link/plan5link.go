// Package plan5link runs rtcp's session layer over the Plan5 JSON-line wire:
// a mux.Framer for Plan5 messages and the Aloha negotiation of extensions.
package plan5link

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/sockio"
	"rtcp/protocol/plan5"
)

// DefaultWindow is the per-session flow-control window rtcp offers: each
// session's window starts there and grows, up to mux.DefaultMaxWindow,
// while the round trip rather than the reader holds the peer back (the
// peer sees only larger grants).
const DefaultWindow = 256 << 10

// Framer maps Plan5 messages to mux frames.
type Framer struct {
	r        *plan5.Reader
	w        io.Writer // the connection's, raw where it is TCP
	wb       *[]byte   // the write buffer (wbuf.go); nil while nothing is buffered
	produced int64     // bytes of messages WriteFrame encoded (Counts)
	written  int64     // bytes of them the connection took (Counts)
	f        mux.Frame
	data     plan5.Data   // the message of each Data frame written: no allocation
	hb       *plan5.Aloha // the heartbeat (keepalive.go)
	legacy   bool         // write each message with a write of its own, paced
	last     time.Time    // of the last write to a legacy peer
}

// NewFramer returns a Framer reading with r (the connection's one Reader)
// and writing to w.
func NewFramer(r *plan5.Reader, w io.Writer) *Framer {
	return &Framer{r: r, w: sockio.WriterOf(w)}
}

// Counts returns how many bytes of messages WriteFrame has encoded,
// buffered or not, and how many of them the connection took
// (mux.Counter).
func (fr *Framer) Counts() (produced, written int64) { return fr.produced, fr.written }

// ReadFrame reads the next session-layer frame. An Aloha in the middle of
// a link (the seed's "DP --Aloha--> IS" before a Connect, or a heartbeat)
// carries nothing the session layer needs and is skipped.
func (fr *Framer) ReadFrame() (*mux.Frame, error) {
	for {
		m, err := fr.r.ReadMessage()
		if err != nil {
			if errors.Is(err, plan5.ErrBadType) || errors.Is(err, plan5.ErrBadJSON) || errors.Is(err, plan5.ErrLineTooLong) {
				// The session tells the peer why before it closes.
				return nil, &mux.ProtocolError{Msg: err.Error()}
			}
			return nil, err
		}
		f := &fr.f
		switch m := m.(type) {
		case *plan5.Aloha:
			continue
		case *plan5.Connect:
			*f = mux.Frame{Kind: mux.KindOpen, Name: m.N, Addr: m.Addr, Token: m.Token}
			if m.Peer != "" || m.Secret != nil || m.Direct {
				f.Ext = m // a direct session's fields: the Connect itself
			}
		case *plan5.Ack:
			*f = mux.Frame{Kind: mux.KindAck, ID: m.X, Reason: m.R}
		case *plan5.Data:
			*f = mux.Frame{Kind: mux.KindData, ID: m.X, Data: m.C, Credit: m.Window}
		case *plan5.Close:
			if m.Half {
				*f = mux.Frame{Kind: mux.KindCloseWrite, ID: m.X}
			} else {
				*f = mux.Frame{Kind: mux.KindClose, ID: m.X, Reason: m.R, Abort: m.Abort}
			}
		}
		return f, nil
	}
}

// SetLegacy makes the Framer write to a peer that announced the legacy
// version (plan5.Legacy): each message goes to the connection with a
// write of its own, never in one write with another, and at least
// LegacyGap after the one before (or after SetLegacy, which a DP calls
// just before it writes its Aloha). Plan5's own reader loses whatever a
// read brings after the message it wanted, and TCP hands it two writes in
// one read whenever the second arrives before the reader is back: the gap
// gives it time to come back (SPEC.md, "The legacy form").
func (fr *Framer) SetLegacy(on bool) {
	fr.legacy = on
	fr.last = time.Now()
}

// LegacyGap is the least time between two writes to a legacy peer: with
// Data of LegacyChunkSize bytes, at most 2 MB/s to such a peer.
const LegacyGap = time.Millisecond

// WriteFrame writes f as a Plan5 message into the write buffer, or to a
// legacy peer straight to the connection. Its bytes are encoded where
// they are to be written from, in the write buffer: no copy.
func (fr *Framer) WriteFrame(f *mux.Frame) error {
	var m plan5.Message
	need := 256 // a message other than Data: a few short fields
	switch f.Kind {
	case mux.KindOpen:
		c := &plan5.Connect{N: f.Name, Addr: f.Addr, Token: f.Token}
		if ext, ok := f.Ext.(*plan5.Connect); ok {
			c.Direct, c.Peer, c.Secret = ext.Direct, ext.Peer, ext.Secret
		}
		m = c
		need += len(c.N) + len(c.Addr) + len(c.Token) + len(c.Peer) + 2*len(c.Secret)
	case mux.KindAck:
		m = &plan5.Ack{X: f.ID, R: f.Reason}
		need += len(f.Reason)
	case mux.KindData:
		fr.data = plan5.Data{X: f.ID, C: f.Data, Window: f.Credit}
		m = &fr.data
		need = plan5.DataLen(len(f.Data))
	case mux.KindCloseWrite:
		m = &plan5.Close{X: f.ID, Half: true}
	case mux.KindClose:
		r := f.Reason
		if r == "" {
			r = "closed"
		}
		m = &plan5.Close{X: f.ID, R: r, Abort: f.Abort}
		need += len(r)
	case mux.KindKeepAlive:
		m = fr.heartbeat()
	default:
		return fmt.Errorf("plan5link: cannot write frame kind %v", f.Kind)
	}
	err := fr.room(need)
	if err == nil {
		b := *fr.wb
		n := len(b)
		b = plan5.AppendMessage(b, m)
		*fr.wb = b
		fr.produced += int64(len(b) - n)
		if fr.legacy {
			if wait := LegacyGap - time.Since(fr.last); wait > 0 {
				time.Sleep(wait)
			}
			err = fr.writeOut()
			fr.last = time.Now()
		}
	}
	fr.data.C = nil // the caller's buffer is not kept
	return err
}

// Flush writes what WriteFrame buffered and gives the write buffer back.
func (fr *Framer) Flush() error {
	err := fr.writeOut()
	if fr.wb != nil {
		putWbuf(fr.wb)
		fr.wb = nil
	}
	return err
}

// LinkReadBuffer is the read buffer of a link between a server and the
// DP, which carries many sessions' Data: room for two of the longest lines
// rtcp sends, so that a line is read with one system call, not sixteen.
const LinkReadBuffer = 2 * plan5.DefaultMaxLine

// Offer fills in the extensions rtcp offers in its Aloha.
func Offer(a *plan5.Aloha, maxLine int) {
	a.V = plan5.Version
	a.Window = DefaultWindow
	a.MaxLine = maxLine
	a.HalfClose = true
}

// LegacyChunkSize is the most payload a Data carries to a peer that
// announced the legacy version: its line, base64 and all, stays well
// under the 4096 bytes of Plan5's own reader (at most 2765 bytes). See
// SPEC.md, "The legacy form", for what that buys and what it does not.
const LegacyChunkSize = 2048

// Config returns the session configuration that our Aloha and the peer's
// agree on: each extension is on only if both offered it.
func Config(ours, theirs *plan5.Aloha) mux.Config {
	peerLine := theirs.MaxLine
	if peerLine == 0 {
		peerLine = plan5.PlainMaxLine
	}
	chunk := plan5.ChunkSize(peerLine)
	if plan5.Legacy(theirs.V) {
		chunk = min(chunk, LegacyChunkSize)
	}
	return mux.Config{
		FlowControl: ours.Window > 0 && theirs.Window > 0,
		Window:      ours.Window,
		MaxWindow:   mux.DefaultMaxWindow,
		PeerWindow:  theirs.Window,
		HalfClose:   ours.HalfClose && theirs.HalfClose,
		ChunkSize:   chunk,
	}
}

// CheckAloha validates a peer's Aloha: version, role, and limits.
func CheckAloha(a *plan5.Aloha, roles ...plan5.Role) error {
	if !plan5.Compatible(a.V) {
		return fmt.Errorf("rtcp: incompatible protocol version %d (this side speaks %d..19999, and Plan5's own %d)", a.V, plan5.Version, plan5.LegacyVersion)
	}
	ok := len(roles) == 0
	for _, r := range roles {
		ok = ok || a.R == r
	}
	if !ok {
		return fmt.Errorf("rtcp: unexpected role %v in Aloha (want %v)", a.R, roles)
	}
	if a.Window < 0 || a.MaxLine < 0 || a.HeartBeat < 0 {
		return fmt.Errorf("rtcp: negative Window, MaxLine or HeartBeat in Aloha")
	}
	if a.MaxLine != 0 && a.MaxLine < plan5.MinMaxLine {
		return fmt.Errorf("rtcp: MaxLine %d in Aloha is below the minimum %d", a.MaxLine, plan5.MinMaxLine)
	}
	return nil
}

// WriteMessage writes one message straight to c (used for handshakes,
// before a session owns the connection).
func WriteMessage(c net.Conn, m plan5.Message, timeout time.Duration) error {
	return WriteMessages(c, timeout, m)
}

// WriteMessages is WriteMessage for several messages, in one write.
func WriteMessages(c net.Conn, timeout time.Duration, ms ...plan5.Message) error {
	if timeout > 0 {
		c.SetWriteDeadline(time.Now().Add(timeout))
		defer c.SetWriteDeadline(time.Time{})
	}
	var b []byte
	for _, m := range ms {
		b = plan5.AppendMessage(b, m)
	}
	_, err := c.Write(b)
	return err
}

// ReadAloha reads the first message of a connection, which must be an Aloha.
func ReadAloha(r *plan5.Reader) (*plan5.Aloha, error) {
	m, err := r.ReadMessage()
	if err != nil {
		return nil, err
	}
	a, ok := m.(*plan5.Aloha)
	if !ok {
		return nil, fmt.Errorf("rtcp: expected Aloha as the first message, got %v", m.Type())
	}
	return a, nil
}
