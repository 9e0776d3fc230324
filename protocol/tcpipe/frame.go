package tcpipe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

const (
	// Magic opens every frame, big-endian.
	Magic = 21

	// HeaderLen is the size of the link header: magic and body size.
	HeaderLen = 8

	// MaxData is the most data bytes one frame carries.
	MaxData = 1024
)

// bodyHeaderLen is the size of the message header that begins every body:
// kind, local flag and port.
const bodyHeaderLen = 4

// maxBody is the largest body size a frame may declare.
const maxBody = bodyHeaderLen + MaxData

var (
	// ErrCorrupt is wrapped by the errors of a link header that cannot be
	// right: a wrong magic, or a body size out of range. The stream can no
	// longer be framed and the link is lost: close it (and, as the original
	// does, every user connection it carries).
	ErrCorrupt = errors.New("tcpipe: corrupt partner link")

	// ErrInvalidFrame is wrapped by every error about what a well delimited
	// frame says: an unknown kind, a local flag other than 0 or 1, a Connect
	// with the local flag set, a Connect or Disconnect with data, or more
	// data than [MaxData]. Test for it with errors.Is.
	//
	// [Reader.ReadFrame] returns such a frame together with the error and
	// stays in step with the stream, so the caller may decide to read on.
	ErrInvalidFrame = errors.New("tcpipe: invalid frame")
)

// Kind is the kind of a message.
type Kind uint8

// The kinds of message.
const (
	Data       Kind = 0 // data for the connection on Port
	Connect    Kind = 1 // a user application connected: connect to the target on Port
	Disconnect Kind = 2 // the connection on Port has ended, or could not be made
)

// String returns the kind's name as the original spells it, such as
// "Connect", or "Kind(7)" for a kind the protocol does not have.
func (k Kind) String() string {
	switch k {
	case Data:
		return "Data"
	case Connect:
		return "Connect"
	case Disconnect:
		return "Disconnect"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Frame is one message of the partner link.
type Frame struct {
	Kind Kind

	// Local says, from the receiver's point of view, which of its
	// connections on Port the frame is about: true for the one it accepted
	// from a user application, false for the one it made to the target. A
	// sender therefore sets the opposite of its own view. Connect is never
	// Local.
	Local bool

	// Port is the user connection's port, and so the session id: at most
	// one accepted and one made connection per port at a time.
	Port uint16

	// Data is the payload of a Data frame, at most MaxData bytes; it is
	// empty for Connect and Disconnect.
	Data []byte
}

// String describes the frame for logs, without its data bytes.
func (f Frame) String() string {
	side := "remote"
	if f.Local {
		side = "local"
	}
	return fmt.Sprintf("%v port %d %s (%d bytes)", f.Kind, f.Port, side, len(f.Data))
}

// AppendFrame appends the encoding of f to dst and returns the extended
// slice. If f breaks the protocol it returns dst unchanged and an error
// wrapping [ErrInvalidFrame]; data over [MaxData] bytes must be split over
// several frames by the caller.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if err := f.check(); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, Magic)
	dst = binary.BigEndian.AppendUint32(dst, uint32(bodyHeaderLen+len(f.Data)))
	dst = append(dst, byte(f.Kind), boolByte(f.Local))
	dst = binary.LittleEndian.AppendUint16(dst, f.Port)
	return append(dst, f.Data...), nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// check reports why f cannot be on the wire. The encoder and the decoder
// share it, so that every frame ReadFrame accepts re-encodes to its own bytes.
func (f Frame) check() error {
	if len(f.Data) > MaxData {
		return invalidf("tcpipe: %v for port %d carries %d data bytes, more than the %d a frame carries; split it",
			f.Kind, f.Port, len(f.Data), MaxData)
	}
	switch f.Kind {
	case Data:
	case Connect:
		if f.Local {
			return invalidf("tcpipe: Connect for port %d has the local flag set; a Connect is never local", f.Port)
		}
		fallthrough
	case Disconnect:
		if len(f.Data) != 0 {
			return invalidf("tcpipe: %v for port %d carries %d data bytes; only Data carries data",
				f.Kind, f.Port, len(f.Data))
		}
	default:
		return invalidf("tcpipe: unknown kind %d for port %d (want Data 0, Connect 1 or Disconnect 2)",
			uint8(f.Kind), f.Port)
	}
	return nil
}

// wireError is an error about a frame. Its message says exactly what was
// wrong; it matches its sentinel with errors.Is.
type wireError struct {
	msg  string
	kind error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &wireError{msg: fmt.Sprintf(format, args...), kind: ErrInvalidFrame}
}

func corruptf(format string, args ...any) error {
	return &wireError{msg: fmt.Sprintf(format, args...), kind: ErrCorrupt}
}
