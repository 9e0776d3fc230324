package mihini

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Reader decodes the frames of one link. Keep one Reader for the life of the
// connection: it buffers, so bytes it has read ahead belong to the next frame.
// A Reader is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	hdr     [HeaderLen]byte
	payload []byte // reused: grows to the largest frame seen, at most MaxPayload
	err     error  // sticky: set once the stream is out of step
}

// NewReader returns a Reader of the frames in r. If r is a [bufio.Reader]
// of at least the default size, the Reader uses it instead of adding a second
// buffer, so bytes a caller has peeked at are not lost.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReader(r)}
}

// ReadFrame reads the next frame. Its Payload aliases the Reader's buffer and
// is valid only until the next call to ReadFrame: copy it to keep it.
//
// At the end of the stream ReadFrame returns io.EOF if the stream ended
// between frames, and an error wrapping io.ErrUnexpectedEOF if it ended
// inside one.
//
// If the frame is well delimited but breaks the protocol, ReadFrame returns
// the frame and an error wrapping [ErrInvalidFrame]; the Reader stays in step
// and the next call reads the next frame.
//
// Any other error comes from the underlying reader. If it happens before the
// first byte of a frame (a read deadline, say), calling ReadFrame again is
// safe. If it happens inside a frame, the rest of the stream cannot be
// framed: every later call returns the same error.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if n == 0 {
			return Frame{}, err // between frames: io.EOF, or nothing consumed
		}
		return Frame{}, r.fail(fmt.Errorf("mihini: frame header cut short after %d of %d bytes: %w",
			n, HeaderLen, err))
	}
	size := int(binary.BigEndian.Uint16(r.hdr[:2]))
	f := Frame{Command: Command(r.hdr[2]), Client: r.hdr[3]}
	if size > cap(r.payload) {
		r.payload = make([]byte, max(size, 512, min(2*cap(r.payload), MaxPayload)))
	}
	f.Payload = r.payload[:size:size]
	if n, err := io.ReadFull(r.br, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, r.fail(fmt.Errorf("mihini: payload of %v for client %d cut short after %d of %d bytes: %w",
			f.Command, f.Client, n, size, err))
	}
	return f, f.check()
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}
