// Package plan5 encodes and decodes the Plan5 "Reversable TCP" wire protocol:
// messages of two lines, a type digit and a compact JSON object.
//
// The package is a pure codec: it has no goroutines, does no networking and
// keeps no time. SPEC.md beside this file is the wire format as rtcp reads
// the seed, with every choice the seed leaves open and every extension.
package plan5

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Version is the protocol version rtcp sends in its Aloha.
const Version = 10000

// LegacyVersion is the version Plan5's own code sends (its constant 0x71):
// the same protocol, spoken by a peer whose reader loses whatever a read
// brings after the message it wanted. A side that hears it answers in it
// and writes it the legacy form (SPEC.md, "Version").
const LegacyVersion = 113

// Compatible reports whether a peer's Aloha version can be spoken to:
// 10000 through 19999, and LegacyVersion.
func Compatible(v int) bool { return v == LegacyVersion || v >= 10000 && v <= 19999 }

// Legacy reports whether v is LegacyVersion.
func Legacy(v int) bool { return v == LegacyVersion }

// Type is the message type carried on the first line of a message.
type Type byte

// The message types of the seed.
const (
	TypeAloha   Type = 0
	TypeConnect Type = 1
	TypeAck     Type = 2
	TypeData    Type = 3
	TypeClose   Type = 4
)

func (t Type) String() string {
	switch t {
	case TypeAloha:
		return "Aloha"
	case TypeConnect:
		return "Connect"
	case TypeAck:
		return "Ack"
	case TypeData:
		return "Data"
	case TypeClose:
		return "Close"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Role is the R field of an Aloha: who is speaking.
type Role int

// The roles of the seed. RoleAbortVersion answers an incompatible version.
const (
	RoleDS           Role = 0 // direct server
	RoleDC           Role = 1 // direct client
	RoleIS           Role = 2 // indirect server
	RoleIC           Role = 3 // indirect client
	RoleDP           Role = 4 // discover point
	RoleAbortVersion Role = 5 // "your version is not compatible"
)

func (r Role) String() string {
	switch r {
	case RoleDS:
		return "DS"
	case RoleDC:
		return "DC"
	case RoleIS:
		return "IS"
	case RoleIC:
		return "IC"
	case RoleDP:
		return "DP"
	case RoleAbortVersion:
		return "AbortVersion"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Limits of line length, in bytes of the JSON line without its newline.
const (
	// PlainMaxLine is what a peer that announces no MaxLine accepts: the
	// original implementation's 4096-byte JSON buffer.
	PlainMaxLine = 4096
	// DefaultMaxLine is the longest line rtcp accepts unless told otherwise,
	// and what it announces in its Aloha.
	DefaultMaxLine = 64 << 10
	// MinMaxLine is the smallest MaxLine a peer may announce.
	MinMaxLine = 1024
)

// ChunkSize returns the largest Data payload whose line fits in maxLine.
func ChunkSize(maxLine int) int {
	const overhead = len(`{"X":-9223372036854775808,"C":""}`)
	n := (maxLine - overhead) / 4 * 3
	if n < 1 {
		return 1
	}
	return n
}

// DataLen returns the most bytes AppendMessage writes for a Data that
// carries n bytes: its type line and its body line, with the longest X
// and Window.
func DataLen(n int) int {
	const overhead = len("3\n" + `{"X":-9223372036854775808,"C":"","Window":-9223372036854775808}` + "\n")
	return overhead + base64.StdEncoding.EncodedLen(n)
}

// Message is one of *Aloha, *Connect, *Ack, *Data and *Close.
type Message interface {
	Type() Type
}

// Aloha opens every connection. The dialling side sends one, and the DP
// answers with its own. Fields after N are rtcp extensions: a plain peer
// ignores them, and a zero value means "not offered".
type Aloha struct {
	V int    `json:"V"`
	R Role   `json:"R"`
	N string `json:"N"`

	// HeartBeat is the heartbeat period in milliseconds that the sender
	// asks of its peer (see SPEC.md).
	HeartBeat int `json:"HeartBeat,omitempty"`
	// Window is the flow-control window, in bytes, that the sender gives
	// each session it receives; offering it means the sender grants credit.
	Window int `json:"Window,omitempty"`
	// MaxLine is the longest JSON line the sender accepts.
	MaxLine int `json:"MaxLine,omitempty"`
	// HalfClose says the sender understands Close with Half set.
	HalfClose bool `json:"HalfClose,omitempty"`
	// Owner identifies the server process behind an IS link, so that the
	// DP can tell a pool of links from a different server (see SPEC.md).
	Owner string `json:"Owner,omitempty"`
	// Transport names a transport the link switches to after the Aloha
	// exchange (SPEC.md: "yamux", "raw").
	Transport string `json:"Transport,omitempty"`
	// Error is a refusal: the sender closes the connection after this Aloha.
	Error string `json:"Error,omitempty"`
	// Token names the session a data link is for (Transport "data"; see
	// SPEC.md, "per-session data links").
	Token string `json:"Token,omitempty"`
	// Spares, on a control link of Transport "tcp", is how many spare
	// data links the server would keep ready at the DP (its Aloha) and how
	// many the DP holds for the link (the DP's answer, with the Token they
	// present); see SPEC.md, "spare data links".
	Spares int `json:"Spares,omitempty"`
	// Via, on an IC Aloha, is the address of the DP that carries this
	// client on behalf of another DP of its cluster: the receiving DP
	// serves it from its own links only, never forwarding it again.
	Via string `json:"Via,omitempty"`

	// Key, Challenge, Binding and Proof are the authentication exchange
	// (SPEC.md, "Authentication"). Key names the key the sender will prove
	// it holds. Challenge is the DP's fresh random challenge, and Binding
	// ("tls-exporter" or empty) says whether the proof must be bound to
	// the TLS connection. Proof, in the sender's second Aloha, is an
	// HMAC-SHA256 of the exchange under the key's secret.
	Key       string `json:"Key,omitempty"`
	Challenge []byte `json:"Challenge,omitempty"`
	Binding   string `json:"Binding,omitempty"`
	Proof     []byte `json:"Proof,omitempty"`

	// To, ClientKey and ClientAddr bind a proof to more than the exchange
	// (SPEC.md, "Authentication"; a proof covers them when any is set).
	// To is the advertised address of the DP the proof is meant for: any
	// other DP refuses it. On a session one DP of a cluster carries to
	// another (with Via), ClientKey and ClientAddr are the key the client
	// proved to the forwarding DP (empty: none) and the address it came
	// from, which a DP that trusts the forwarding DP's key checks its
	// rules against and brokers a direct path to.
	To         string `json:"To,omitempty"`
	ClientKey  string `json:"ClientKey,omitempty"`
	ClientAddr string `json:"ClientAddr,omitempty"`

	// Direct, in an IS's Aloha, says the server takes part in direct
	// sessions: the DP may send it, in a Connect, a client's address and a
	// secret to punch with (SPEC.md, "Direct sessions").
	Direct bool `json:"Direct,omitempty"`
}

// Connect asks for a session. IC->DP: N names the server. DP->IS: N names
// the client, and Addr is the client's network address (an extension).
type Connect struct {
	N    string `json:"N"`
	Addr string `json:"Addr,omitempty"`
	// Token, an extension on a link of Transport "tcp", asks the server to
	// carry the session on a new data link that presents this token.
	Token string `json:"Token,omitempty"`
	// Direct, IC->DP on the raw leg, asks for a direct path to the server
	// (SPEC.md, "Direct sessions"); a DP of a cluster asks so on a hop,
	// for the client it carries (SPEC.md, "Via").
	Direct bool `json:"Direct,omitempty"`
	// EarlyPeer, IC->DP with Direct, asks the DP to tell the client the
	// server's address and the secret as soon as it asks the server, in
	// an Ack with X 0 before the Ack that answers (SPEC.md, "Direct
	// sessions"), so that both sides punch from the open on.
	EarlyPeer bool `json:"EarlyPeer,omitempty"`
	// Peer and Secret, DP->IS, broker a direct session: the client's
	// address as the DP observed it, and the one-time secret both sides
	// prove they hold.
	Peer   string `json:"Peer,omitempty"`
	Secret []byte `json:"Secret,omitempty"`
}

// Ack answers a Connect: X is the session number, or -1 with reason R.
type Ack struct {
	X int64  `json:"X"`
	R string `json:"R,omitempty"`
	// Peer and Secret, DP->IC, broker a direct session (SPEC.md, "Direct
	// sessions"): the server's address as the DP observed it, and the
	// one-time secret. A DP that carried the session over a hop passes
	// on those of the DP that holds the server's link (SPEC.md, "Via").
	Peer   string `json:"Peer,omitempty"`
	Secret []byte `json:"Secret,omitempty"`
}

// Data carries bytes of session X. C is standard padded base64 on the wire.
// Window, an extension, grants the receiver that many more bytes of credit
// for session X; a Data that only grants credit has no C.
type Data struct {
	X      int64  `json:"X"`
	C      []byte `json:"C,omitempty"`
	Window int    `json:"Window,omitempty"`
}

// Close ends session X with reason R. Half (an extension) closes only the
// sender's direction; Abort (an extension) says the session was cut off by
// an error rather than ended. X = -1 ends the whole connection.
type Close struct {
	X     int64  `json:"X"`
	R     string `json:"R,omitempty"`
	Half  bool   `json:"Half,omitempty"`
	Abort bool   `json:"Abort,omitempty"`
}

func (*Aloha) Type() Type   { return TypeAloha }
func (*Connect) Type() Type { return TypeConnect }
func (*Ack) Type() Type     { return TypeAck }
func (*Data) Type() Type    { return TypeData }
func (*Close) Type() Type   { return TypeClose }

// Errors returned by Reader. Each ends the connection it came from: the
// stream of lines can no longer be trusted.
var (
	// ErrLineTooLong reports a JSON line longer than the reader's MaxLine.
	ErrLineTooLong = errors.New("plan5: line too long")
	// ErrBadType reports a type line that is not one digit 0-4.
	ErrBadType = errors.New("plan5: bad message type line")
	// ErrBadJSON reports a body line that is not the JSON the type needs.
	ErrBadJSON = errors.New("plan5: bad JSON body")
)

// AppendMessage appends the wire form of m to dst.
func AppendMessage(dst []byte, m Message) []byte {
	dst = append(dst, '0'+byte(m.Type()), '\n')
	if d, ok := m.(*Data); ok {
		return appendData(dst, d)
	}
	if out, ok := appendFast(dst, m); ok {
		return out
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Only strings, numbers and booleans: Marshal cannot fail.
		panic("plan5: " + err.Error())
	}
	dst = append(dst, b...)
	return append(dst, '\n')
}

// appendData is the hot path: {"X":7,"C":"...","Window":n}.
func appendData(dst []byte, d *Data) []byte {
	dst = append(dst, `{"X":`...)
	dst = strconv.AppendInt(dst, d.X, 10)
	if len(d.C) > 0 || d.Window == 0 {
		dst = append(dst, `,"C":"`...)
		dst = appendBase64(dst, d.C)
		dst = append(dst, '"')
	}
	if d.Window != 0 {
		dst = append(dst, `,"Window":`...)
		dst = strconv.AppendInt(dst, int64(d.Window), 10)
	}
	return append(dst, '}', '\n')
}

// A Reader reads messages from one connection. Keep one Reader for the
// connection's whole life: it buffers, and a second reader would lose what
// the first one buffered.
type Reader struct {
	br      *bufio.Reader
	maxLine int
	line    []byte // holds a line that did not fit in br's buffer
	data    Data   // reused for every Data message
	cbuf    []byte // reused for Data.C
}

// NewReader returns a Reader of r that accepts lines up to maxLine bytes
// (DefaultMaxLine if maxLine <= 0).
func NewReader(r io.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	return &Reader{br: br, maxLine: maxLine}
}

// Grow makes the reader's buffer at least size bytes, keeping what it has
// buffered. A connection that carries long lines (a link full of Data)
// reads them with one system call each instead of one per 4 KiB; a
// connection that may sit idle keeps the small buffer NewReader gives.
func (r *Reader) Grow(size int) {
	if r.br.Size() >= size {
		return
	}
	held, _ := r.br.Peek(r.br.Buffered())
	held = bytes.Clone(held)
	r.br.Discard(len(held))
	r.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(held), r.br), size)
}

// Buffered returns the reader's buffer: bytes read from the connection
// but not yet returned as messages, for a caller that switches transport.
func (r *Reader) Buffered() *bufio.Reader { return r.br }

// ReadMessage reads the next message. A *Data it returns, and its C, are
// only valid until the next call. io.EOF means the connection ended
// cleanly between messages; io.ErrUnexpectedEOF, inside one.
func (r *Reader) ReadMessage() (Message, error) {
	tl, err := r.readLine(2)
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, ErrLineTooLong) {
			return nil, fmt.Errorf("%w: the type line must be one digit", ErrBadType)
		}
		return nil, err
	}
	if len(tl) != 1 || tl[0] < '0' || tl[0] > '4' {
		return nil, fmt.Errorf("%w %q: want one digit 0-4 then a newline", ErrBadType, clip(tl))
	}
	t := Type(tl[0] - '0')
	if t == TypeData && r.br.Size() > r.maxLine {
		// The buffer holds any line: decode it where it lies (a buffer
		// that may not would be decoded into twice).
		d, ok, err := r.readData()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if ok {
			return d, nil
		}
	}
	body, err := r.readLine(r.maxLine)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return r.decode(t, body)
}

func (r *Reader) decode(t Type, body []byte) (Message, error) {
	var m Message
	switch t {
	case TypeData:
		if r.fastData(body) {
			return &r.data, nil
		}
		r.data = Data{C: r.data.C[:0]}
		m = &r.data
	case TypeAloha:
		if a, ok := fastAloha(body); ok {
			return a, nil
		}
		m = new(Aloha)
	case TypeConnect:
		if c, ok := fastConnect(body); ok {
			return c, nil
		}
		m = new(Connect)
	case TypeAck:
		if a, ok := fastAck(body); ok {
			return a, nil
		}
		m = new(Ack)
	case TypeClose:
		m = new(Close)
	}
	if len(body) == 0 || body[0] != '{' {
		return nil, fmt.Errorf("%w in %v: %q is not a JSON object", ErrBadJSON, t, clip(body))
	}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w in %v: %v", ErrBadJSON, t, err)
	}
	return m, nil
}

// fastData decodes the exact form appendData writes, without reflection.
// Anything else falls back to encoding/json.
func (r *Reader) fastData(b []byte) bool {
	const pre = `{"X":`
	if len(b) < len(pre) || string(b[:len(pre)]) != pre {
		return false
	}
	x, i, ok := fastInt(b[len(pre):])
	if !ok {
		return false
	}
	b = b[len(pre)+i:]
	const cpre = `,"C":"`
	if len(b) < len(cpre) || string(b[:len(cpre)]) != cpre {
		return false
	}
	b = b[len(cpre):]
	end := len(b) - 2
	if end < 0 || b[end] != '"' || b[end+1] != '}' {
		return false
	}
	enc := b[:end]
	// The decoder refuses every byte that is not base64 (a quote, an
	// escape, a control character, \r and \n too), sending such a line
	// to encoding/json.
	need := base64.StdEncoding.DecodedLen(len(enc))
	if cap(r.cbuf) < need {
		r.cbuf = make([]byte, need)
	}
	n, err := decodeBase64(r.cbuf[:need], enc)
	if err != nil {
		return false // let encoding/json name the error
	}
	r.data = Data{X: x, C: r.cbuf[:n]}
	return true
}

// readLine returns the next line without its '\n'. The result is valid
// until the next call.
func (r *Reader) readLine(max int) ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if err == nil {
		if len(b)-1 > max {
			return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrLineTooLong, len(b)-1, max)
		}
		return b[:len(b)-1], nil
	}
	r.line = r.line[:0]
	for err == bufio.ErrBufferFull {
		r.line = append(r.line, b...)
		if len(r.line) > max {
			return nil, fmt.Errorf("%w: more than %d bytes without a newline", ErrLineTooLong, max)
		}
		b, err = r.br.ReadSlice('\n')
	}
	r.line = append(r.line, b...)
	if err != nil {
		if err == io.EOF && len(r.line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(r.line)-1 > max {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrLineTooLong, len(r.line)-1, max)
	}
	if cap(r.line) > 4*DefaultMaxLine {
		// Do not keep a huge buffer for an idle connection.
		line := r.line[:len(r.line)-1]
		r.line = nil
		return line, nil
	}
	return r.line[:len(r.line)-1], nil
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
