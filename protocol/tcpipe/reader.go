package tcpipe

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Reader decodes the frames of one partner link. Keep one Reader for the
// life of the connection: it buffers, so bytes it has read ahead belong to
// the next frame. A Reader is not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	hdr  [HeaderLen]byte
	body [maxBody]byte // reused by every frame
	err  error         // sticky: set once the stream is out of step
}

// NewReader returns a Reader of the frames in r. If r is a [bufio.Reader]
// of at least the default size, the Reader uses it instead of adding a second
// buffer, so bytes a caller has peeked at are not lost.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReader(r)}
}

// ReadFrame reads the next frame. Its Data aliases the Reader's buffer and is
// valid only until the next call to ReadFrame: copy it to keep it.
//
// At the end of the stream ReadFrame returns io.EOF if the stream ended
// between frames, and an error wrapping io.ErrUnexpectedEOF if it ended
// inside one.
//
// A wrong magic or a body size out of range returns an error wrapping
// [ErrCorrupt]: the link is lost. If the frame is well delimited but breaks
// the protocol, ReadFrame returns the frame and an error wrapping
// [ErrInvalidFrame]; the Reader stays in step and the next call reads the
// next frame.
//
// Any other error comes from the underlying reader. If it happens before the
// first byte of a frame (a read deadline, say), calling ReadFrame again is
// safe. After an error inside a frame, and after ErrCorrupt, the rest of the
// stream cannot be framed: every later call returns the same error.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if n == 0 {
			return Frame{}, err // between frames: io.EOF, or nothing consumed
		}
		return Frame{}, r.fail(fmt.Errorf("tcpipe: link header cut short after %d of %d bytes: %w",
			n, HeaderLen, err))
	}
	if magic := binary.BigEndian.Uint32(r.hdr[:4]); magic == AuthMagic {
		return Frame{}, r.fail(corruptf("tcpipe: the partner sent an authentication message (magic \"rtcp\"): it holds a shared secret and this side none; give both instances the same secret"))
	} else if magic != Magic {
		return Frame{}, r.fail(corruptf("tcpipe: link header has magic 0x%08x, want 0x%08x (%d): the peer is not a tcpipe partner or the link is out of step; close it",
			magic, Magic, Magic))
	}
	size := binary.BigEndian.Uint32(r.hdr[4:])
	if size < bodyHeaderLen || size > maxBody {
		return Frame{}, r.fail(corruptf("tcpipe: link header has body size %d, want %d to %d (4-byte message header and at most %d data bytes): the link is out of step; close it",
			size, bodyHeaderLen, maxBody, MaxData))
	}
	body := r.body[:size]
	if n, err := io.ReadFull(r.br, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, r.fail(fmt.Errorf("tcpipe: body cut short after %d of %d bytes: %w", n, size, err))
	}
	f := Frame{
		Kind:  Kind(body[0]),
		Local: body[1] != 0,
		Port:  binary.LittleEndian.Uint16(body[2:4]),
		Data:  body[bodyHeaderLen:size:size],
	}
	if body[1] > 1 {
		return f, invalidf("tcpipe: %v for port %d has local flag %d, want 0 or 1", f.Kind, f.Port, body[1])
	}
	return f, f.check()
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}
