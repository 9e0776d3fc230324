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
	src     io.Reader // br's
	exact   bool      // read the next header alone: a split frame came last
	maxData int
	hdr     [HeaderLen]byte
	payload []byte // reused: grows to the largest Data frame seen, at most maxData
	rest    int    // bytes of the last Data frame still to be taken (ReadFrameSplit)
	restID  uint32 // its stream
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
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), src: r, maxData: maxData}
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
	h, p, _, err := r.readFrame(false)
	return h, p, err
}

// ReadFrameSplit is ReadFrame for a caller that can take a Data frame's
// payload from the underlying reader itself (splice(2) it into another
// socket, say). When a Data payload is longer than what the Reader has
// buffered, p holds only the buffered part (valid until the next read of
// any kind), and rest says how many bytes of the frame follow. The caller
// must take exactly those before the next ReadFrame or ReadFrameSplit:
// with ReadRest, or straight from the underlying reader when Buffered is
// 0, telling the Reader with Took.
func (r *Reader) ReadFrameSplit() (h Header, p []byte, rest int, err error) {
	return r.readFrame(true)
}

// Buffered returns how many bytes the Reader has read ahead.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadRest reads the rest of the Data frame ReadFrameSplit left, up to
// len(p) bytes of it, into p. It returns io.EOF when no rest is left.
func (r *Reader) ReadRest(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.rest == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.rest)]
	n, err := io.ReadAtLeast(r.br, p, min(len(p), 1))
	r.rest -= n
	if err != nil {
		return n, r.cutShort(err)
	}
	return n, nil
}

// Took records that the caller took n bytes of the rest straight from the
// underlying reader. Taking more than the rest, or taking while the
// Reader has bytes buffered, puts the stream out of step: Took returns
// an error, as does every later call. A caller that failed to take its
// bytes calls Fail.
func (r *Reader) Took(n int) error {
	if r.err != nil {
		return r.err
	}
	if n < 0 || n > r.rest || r.br.Buffered() > 0 {
		return r.fail(fmt.Errorf("yamux: %d bytes of stream %d's Data frame taken from under the Reader, with %d to come and %d buffered", n, r.restID, r.rest, r.br.Buffered()))
	}
	r.rest -= n
	return nil
}

// Fail records that the caller's taking of the rest failed with err:
// every later call returns it.
func (r *Reader) Fail(err error) error {
	return r.cutShort(err)
}

// Rest returns how many bytes of the last Data frame are still to be
// taken.
func (r *Reader) Rest() int { return r.rest }

func (r *Reader) cutShort(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if r.err != nil {
		return r.err
	}
	return r.fail(fmt.Errorf("yamux: Data frame for stream %d cut short with %d bytes to come: %w", r.restID, r.rest, err))
}

func (r *Reader) readFrame(split bool) (Header, []byte, int, error) {
	if r.err != nil {
		return Header{}, nil, 0, r.err
	}
	if r.rest > 0 {
		return Header{}, nil, 0, r.fail(fmt.Errorf("yamux: frame read with %d bytes of stream %d's Data frame not taken", r.rest, r.restID))
	}
	// After a split frame the next one is likely long too: read its
	// header alone, so that none of its bytes are read ahead and all of
	// them can be left to the caller.
	hr := io.Reader(r.br)
	if split && r.exact && r.br.Buffered() == 0 {
		hr = r.src
	}
	r.exact = false
	if n, err := io.ReadFull(hr, r.hdr[:]); err != nil {
		if n == 0 {
			return Header{}, nil, 0, err // between frames: io.EOF, or nothing consumed
		}
		return Header{}, nil, 0, r.fail(fmt.Errorf("yamux: frame header cut short after %d of %d bytes: %w", n, HeaderLen, err))
	}
	h, err := ParseHeader(r.hdr[:])
	if err != nil {
		return h, nil, 0, r.fail(err)
	}
	if h.Type != TypeData || h.Length == 0 {
		return h, nil, 0, nil
	}
	if uint64(h.Length) > uint64(r.maxData) {
		return h, nil, 0, r.fail(&wireError{fmt.Sprintf("yamux: Data frame for stream %d is %d bytes long, over the cap of %d: the peer sends more than the window this side grants, or the connection is out of step",
			h.StreamID, h.Length, r.maxData), ErrTooLong})
	}
	size := int(h.Length)
	if split && size > r.br.Buffered() {
		p, _ := r.br.Peek(r.br.Buffered())
		r.br.Discard(len(p)) // p stays valid until r.br reads again
		r.rest, r.restID = size-len(p), h.StreamID
		r.exact = true
		return h, p, r.rest, nil
	}
	if size > cap(r.payload) {
		r.payload = make([]byte, max(size, 4<<10, min(2*cap(r.payload), r.maxData)))
	}
	p := r.payload[:size:size]
	if n, err := io.ReadFull(r.br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, 0, r.fail(fmt.Errorf("yamux: Data frame for stream %d cut short after %d of %d bytes: %w", h.StreamID, n, size, err))
	}
	return h, p, 0, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}
