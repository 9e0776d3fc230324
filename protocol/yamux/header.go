package yamux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// Version is the only protocol version there is.
	Version = 0

	// HeaderLen is the size of a frame header.
	HeaderLen = 12

	// InitialWindow is the receive window every stream has in each
	// direction when it opens, before any WindowUpdate.
	InitialWindow = 256 << 10
)

// Type is a frame's type.
type Type uint8

// The frame types.
const (
	// TypeData carries Length bytes of payload for a stream.
	TypeData Type = 0
	// TypeWindowUpdate grants the stream's sender Length more bytes.
	TypeWindowUpdate Type = 1
	// TypePing asks for (SYN) or answers (ACK) a ping; Length is opaque
	// and echoed.
	TypePing Type = 2
	// TypeGoAway ends the session; Length is a GoAway code.
	TypeGoAway Type = 3
)

func (t Type) String() string {
	switch t {
	case TypeData:
		return "Data"
	case TypeWindowUpdate:
		return "WindowUpdate"
	case TypePing:
		return "Ping"
	case TypeGoAway:
		return "GoAway"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Flags are a frame's flags; they combine.
type Flags uint16

// The flags.
const (
	// FlagSYN opens a stream (Data, WindowUpdate) or asks for a ping.
	FlagSYN Flags = 1 << iota
	// FlagACK accepts a stream (Data, WindowUpdate) or answers a ping.
	FlagACK
	// FlagFIN half-closes a stream: the sender sends no more data.
	FlagFIN
	// FlagRST resets a stream: it ends at once in both directions.
	FlagRST
)

func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i, name := range [...]string{"SYN", "ACK", "FIN", "RST"} {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
		}
	}
	if rest := f &^ (FlagSYN | FlagACK | FlagFIN | FlagRST); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// The GoAway codes.
const (
	GoAwayNormal        uint32 = 0
	GoAwayProtocolError uint32 = 1
	GoAwayInternalError uint32 = 2
)

// GoAwayText names a GoAway code: "normal", "protocol error", "internal
// error", or "unknown code N".
func GoAwayText(code uint32) string {
	switch code {
	case GoAwayNormal:
		return "normal"
	case GoAwayProtocolError:
		return "protocol error"
	case GoAwayInternalError:
		return "internal error"
	}
	return "unknown code " + strconv.FormatUint(uint64(code), 10)
}

// Header is a frame header. Length is the payload length of a Data frame,
// the window delta of a WindowUpdate, the opaque value of a Ping and the
// code of a GoAway.
type Header struct {
	Version  uint8
	Type     Type
	Flags    Flags
	StreamID uint32
	Length   uint32
}

// Append appends the 12 bytes of h to dst and returns the extended slice.
func (h Header) Append(dst []byte) []byte {
	dst = append(dst, h.Version, byte(h.Type))
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Flags))
	dst = binary.BigEndian.AppendUint32(dst, h.StreamID)
	return binary.BigEndian.AppendUint32(dst, h.Length)
}

// String describes h for logs, as in "WindowUpdate SYN stream 1 length
// 3932160".
func (h Header) String() string {
	s := fmt.Sprintf("%v %v stream %d length %d", h.Type, h.Flags, h.StreamID, h.Length)
	if h.Version != Version {
		s = "version " + strconv.Itoa(int(h.Version)) + " " + s
	}
	return s
}

// Errors the decoder reports. Each error it returns wraps one of them and
// says exactly what was wrong; all three mean the connection is no longer
// in step (its length fields cannot be trusted) and must be closed.
var (
	// ErrVersion: a header's version is not 0.
	ErrVersion = errors.New("yamux: unsupported protocol version")
	// ErrType: a header's type is none of Data, WindowUpdate, Ping, GoAway.
	ErrType = errors.New("yamux: unknown frame type")
	// ErrTooLong: a Data frame is longer than the Reader's cap.
	ErrTooLong = errors.New("yamux: data frame too long")
)

// ParseHeader decodes the header at the start of b, which must hold at
// least HeaderLen bytes. A version other than 0 or an unknown type is an
// error wrapping ErrVersion or ErrType, returned with the header as read.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("yamux: a header is %d bytes, got %d", HeaderLen, len(b))
	}
	h := Header{
		Version:  b[0],
		Type:     Type(b[1]),
		Flags:    Flags(binary.BigEndian.Uint16(b[2:4])),
		StreamID: binary.BigEndian.Uint32(b[4:8]),
		Length:   binary.BigEndian.Uint32(b[8:12]),
	}
	return h, h.check()
}

func (h Header) check() error {
	if h.Version != Version {
		return &wireError{fmt.Sprintf("yamux: frame header has version %d, want %d: the peer does not speak yamux, or the connection is out of step", h.Version, Version), ErrVersion}
	}
	if h.Type > TypeGoAway {
		return &wireError{fmt.Sprintf("yamux: frame header has type %d, want 0 (Data), 1 (WindowUpdate), 2 (Ping) or 3 (GoAway): the peer does not speak yamux, or the connection is out of step", uint8(h.Type)), ErrType}
	}
	return nil
}

// wireError is an error about a frame: its text says what was wrong and it
// matches its sentinel with errors.Is.
type wireError struct {
	msg  string
	kind error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.kind }
