package yamux

import (
	"bufio"
	"fmt"
	"io"
)

// readBufSize is the Reader's read-ahead. Small frames (window updates,
// pings, short data) come many to a read; a payload longer than what is
// buffered is read straight into the payload buffer, not through this one.
const readBufSize = 16 << 10

// Reader decodes the frames of one connection. Keep one Reader for the
// life of the connection: it buffers, so bytes it has read ahead belong to
// the next frame. A Reader is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	maxData int
	hdr     [HeaderLen]byte
	payload []byte // reused: grows to the largest Data frame seen, at most maxData
	err     error  // sticky: set once the stream is out of step
}

// NewReader returns a Reader of the frames in r that refuses Data frames
// longer than maxData bytes (maxData <= 0 means InitialWindow, the most a
// peer may send on a stream whose window it was never granted more).
// A peer never has more in flight on a stream than the window granted to
// it, so maxData should be at least the window this side grants.
func NewReader(r io.Reader, maxData int) *Reader {
	if maxData <= 0 {
		maxData = InitialWindow
	}
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), maxData: maxData}
}

// MaxData returns the longest Data payload the Reader accepts.
func (r *Reader) MaxData() int { return r.maxData }

// ReadFrame reads the next frame: its header, and for a Data frame its
// payload. The payload aliases the Reader's buffer and is valid only until
// the next call; it is empty for every other type.
//
// At the end of the stream ReadFrame returns io.EOF if the stream ended
// between frames, and an error wrapping io.ErrUnexpectedEOF if it ended
// inside one.
//
// A version other than 0, an unknown type or a Data frame longer than the
// cap returns the header and an error wrapping ErrVersion, ErrType or
// ErrTooLong: the stream is out of step and the connection must be closed.
// Any other error comes from the underlying reader. If it happens before
// the first byte of a frame (a read deadline, say), calling ReadFrame again
// is safe. After an error inside a frame or a decoding error every later
// call returns the same error.
func (r *Reader) ReadFrame() (Header, []byte, error) {
	if r.err != nil {
		return Header{}, nil, r.err
	}
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if n == 0 {
			return Header{}, nil, err // between frames: io.EOF, or nothing consumed
		}
		return Header{}, nil, r.fail(fmt.Errorf("yamux: frame header cut short after %d of %d bytes: %w", n, HeaderLen, err))
	}
	h, err := ParseHeader(r.hdr[:])
	if err != nil {
		return h, nil, r.fail(err)
	}
	if h.Type != TypeData || h.Length == 0 {
		return h, nil, nil
	}
	if uint64(h.Length) > uint64(r.maxData) {
		return h, nil, r.fail(&wireError{fmt.Sprintf("yamux: Data frame for stream %d is %d bytes long, over the cap of %d: the peer sends more than the window this side grants, or the connection is out of step",
			h.StreamID, h.Length, r.maxData), ErrTooLong})
	}
	size := int(h.Length)
	if size > cap(r.payload) {
		r.payload = make([]byte, max(size, 4<<10, min(2*cap(r.payload), r.maxData)))
	}
	p := r.payload[:size:size]
	if n, err := io.ReadFull(r.br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, r.fail(fmt.Errorf("yamux: Data frame for stream %d cut short after %d of %d bytes: %w", h.StreamID, n, size, err))
	}
	return h, p, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}
