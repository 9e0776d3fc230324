package mihini

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

const (
	// HeaderLen is the size of a frame header: payload length, command and
	// client id.
	HeaderLen = 4

	// MaxPayload is the largest payload one frame carries: its length is a u16.
	MaxPayload = 1<<16 - 1
)

var (
	// ErrInvalidFrame is wrapped by every error about what a frame says, as
	// opposed to how it is delimited: an unknown command, a LISTEN other than
	// 00 00 04 00, a CLOSE with a payload, a malformed CONNECT payload, or a
	// payload too large for one frame. Test for it with errors.Is.
	//
	// [Reader.ReadFrame] returns such a frame together with the error and
	// stays in step with the stream, so the caller may answer (for example
	// with CLOSE for that client) and read on.
	ErrInvalidFrame = errors.New("mihini: invalid frame")
)

// Command is the kind of a frame.
type Command uint8

// The commands of the protocol.
const (
	Connect Command = 1 // server -> device: dial the address in the payload
	Close   Command = 2 // either way: the session of this client id has ended
	Data    Command = 3 // either way: payload bytes for this client id
	Listen  Command = 4 // device -> server, first frame: accept clients for me
)

// String returns the command's name as the original documents it, such as
// "CONNECT", or "Command(9)" for a command the protocol does not have.
func (c Command) String() string {
	switch c {
	case Connect:
		return "CONNECT"
	case Close:
		return "CLOSE"
	case Data:
		return "DATA"
	case Listen:
		return "LISTEN"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Frame is one frame of the link.
type Frame struct {
	Command Command

	// Client is the client id: the session the frame belongs to. It is 0 in
	// LISTEN.
	Client uint8

	// Payload is the CONNECT payload (see [AppendConnect] and
	// [ParseConnect]) or the DATA bytes; it is empty for CLOSE and LISTEN.
	Payload []byte
}

// String describes the frame for logs, without its payload bytes.
func (f Frame) String() string {
	if f.Command == Listen {
		return "LISTEN"
	}
	return fmt.Sprintf("%v client %d (%d bytes)", f.Command, f.Client, len(f.Payload))
}

// AppendFrame appends the encoding of f to dst and returns the extended
// slice. If f breaks the protocol it returns dst unchanged and an error
// wrapping [ErrInvalidFrame]; a DATA payload over [MaxPayload] bytes must be
// split over several frames by the caller.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if err := f.check(); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.Payload)))
	dst = append(dst, byte(f.Command), f.Client)
	return append(dst, f.Payload...), nil
}

// check reports why f cannot be on the wire. The encoder and the decoder
// share it, so that every frame ReadFrame accepts re-encodes to its own bytes.
func (f Frame) check() error {
	if len(f.Payload) > MaxPayload {
		return invalidf("mihini: %v payload of %d bytes for client %d exceeds %d, the most one frame carries; split it",
			f.Command, len(f.Payload), f.Client, MaxPayload)
	}
	switch f.Command {
	case Connect:
		if problem := connectProblem(f.Payload); problem != "" {
			return invalidf("mihini: CONNECT for client %d: %s", f.Client, problem)
		}
	case Close:
		if len(f.Payload) != 0 {
			return invalidf("mihini: CLOSE for client %d carries %d payload bytes; CLOSE has none",
				f.Client, len(f.Payload))
		}
	case Data:
	case Listen:
		if f.Client != 0 || len(f.Payload) != 0 {
			return invalidf("mihini: LISTEN must be exactly 00 00 04 00, got client id %d and %d payload bytes",
				f.Client, len(f.Payload))
		}
	default:
		return invalidf("mihini: unknown command %d for client %d (want CONNECT 1, CLOSE 2, DATA 3 or LISTEN 4)",
			uint8(f.Command), f.Client)
	}
	return nil
}

// maxAddress is the longest address a CONNECT payload can hold: the payload
// also carries the address length and the port, 2 bytes each.
const maxAddress = MaxPayload - 4

// AppendConnect appends the CONNECT payload for the address host:port to dst
// and returns the extended slice:
//
//	u16 address length | address | u16 port
//
// host is the text the device will dial (a host name or an IP literal,
// without brackets or port). An empty host, which a Go dialer would take as
// the device itself, or one too long for a frame, returns dst unchanged and
// an error wrapping [ErrInvalidFrame].
func AppendConnect(dst []byte, host string, port uint16) ([]byte, error) {
	if host == "" {
		return dst, invalidf("mihini: CONNECT address is empty; name the host the device should dial")
	}
	if len(host) > maxAddress {
		return dst, invalidf("mihini: CONNECT address of %d bytes exceeds %d, the most a frame carries",
			len(host), maxAddress)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(host)))
	dst = append(dst, host...)
	return binary.BigEndian.AppendUint16(dst, port), nil
}

// ParseConnect decodes a CONNECT payload into the host and port the device
// should dial. A malformed payload returns an error wrapping
// [ErrInvalidFrame]. The host is copied: it stays valid after the next
// ReadFrame.
func ParseConnect(payload []byte) (host string, port uint16, err error) {
	if problem := connectProblem(payload); problem != "" {
		return "", 0, invalidf("mihini: CONNECT payload: %s", problem)
	}
	n := int(binary.BigEndian.Uint16(payload))
	return string(payload[2 : 2+n]), binary.BigEndian.Uint16(payload[2+n:]), nil
}

// connectProblem says what is wrong with a CONNECT payload, or "" if it is
// well formed.
func connectProblem(p []byte) string {
	if len(p) < 2 {
		return fmt.Sprintf("%d bytes are too short for the 2-byte address length", len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if n == 0 {
		return "the address is empty; the server must name the host the device should dial"
	}
	if want := 2 + n + 2; len(p) != want {
		return fmt.Sprintf("%d bytes, but an address of %d bytes makes it %d (2-byte length, address, 2-byte port)",
			len(p), n, want)
	}
	return ""
}

// frameError is an error about a frame's content. Its message says exactly
// what was wrong; it matches its sentinel with errors.Is.
type frameError struct {
	msg  string
	kind error
}

func (e *frameError) Error() string { return e.msg }
func (e *frameError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &frameError{msg: fmt.Sprintf(format, args...), kind: ErrInvalidFrame}
}
