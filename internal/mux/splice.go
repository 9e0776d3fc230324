package mux

import (
	"net"
	"sync"
)

// A DataHeaderWriter is a Framer whose Data frames carry their bytes as
// they are, after a header (yamux). For such a wire the session can move
// a frame's bytes from a socket to the link's socket inside the kernel
// (Stream.SpliceFrom), the Framer writing only the header.
type DataHeaderWriter interface {
	// WriteDataHeader writes, into the Framer's buffer, the header of a
	// Data frame of n bytes for stream id; the n bytes follow on the
	// connection right after the next Flush.
	WriteDataHeader(id int64, n int) error
}

// A DataSplitter is a Framer that can leave the bytes of a long Data
// frame on the link for the session to take itself: a stream relayed into
// a TCP socket (WriteTo, PushTo) then gets them inside the kernel,
// spliced from the link's socket, never copied through user space.
//
// Its ReadFrame may return a KindData frame with Rest > 0: Data holds the
// frame's bytes read so far and Rest more follow on the connection. The
// session takes exactly those before it calls ReadFrame again: with
// ReadRest, or, when Direct reports that nothing is buffered between the
// Framer and the connection given to New, by reading that connection
// itself and reporting each piece with TookRest. A Framer must split only
// when its reads come from that connection.
type DataSplitter interface {
	Framer
	// ReadRest reads up to len(p) bytes of the rest into p.
	ReadRest(p []byte) (int, error)
	// Direct reports whether the next bytes of the connection are the
	// rest's.
	Direct() bool
	// TookRest records n bytes of the rest taken from the connection,
	// and err, if the taking failed: the link is then broken, and
	// TookRest returns the error the link ends with.
	TookRest(n int, err error) error
}

// takeRest takes the Rest bytes of Data frame f (a DataSplitter's) off
// the link for its stream: spliced to the stream's destination where it
// can, read and pushed where not, dropped for a stream that is gone.
func (s *Session) takeRest(f *Frame) error {
	if s.split == nil {
		return s.protoErr("a Data frame of stream %d has %d of its bytes still on the link, from a framer that does not split frames (the adapter's bug: only a DataSplitter sets Frame.Rest)", f.ID, f.Rest)
	}
	s.mu.Lock()
	st := s.streams[f.ID]
	s.mu.Unlock()
	for rest := f.Rest; rest > 0; {
		if st != nil && s.linkRC != nil && s.split.Direct() {
			n, ok, err := st.spliceRest(s.linkRC, rest, s.idle.Load())
			if ok {
				rest -= n
				if err := s.split.TookRest(n, err); err != nil {
					return err
				}
				continue
			}
		}
		bp := restPool.Get().(*[]byte)
		n, err := s.split.ReadRest((*bp)[:min(rest, len(*bp))])
		if n > 0 && st != nil {
			st.push((*bp)[:n])
		}
		restPool.Put(bp)
		rest -= n
		if err != nil {
			return err
		}
	}
	return nil
}

var restPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// spliceChunk is the most one spliced frame carries.
const spliceChunk = 1 << 20

// takeCredit waits until the stream may send and takes up to max bytes
// of its credit.
func (st *Stream) takeCredit(max int) (int, error) {
	for {
		select {
		case <-st.closed:
			return 0, net.ErrClosed
		default:
		}
		st.mu.Lock()
		if err := st.writeErrLocked(); err != nil {
			st.mu.Unlock()
			return 0, err
		}
		k := min(max, st.credit)
		st.credit -= k
		st.mu.Unlock()
		if k > 0 {
			return k, nil
		}
		select {
		case <-st.writeReady:
		case <-st.wd.Wait():
			return 0, errTimeout
		case <-st.closed:
		case <-st.s.done:
			return 0, st.s.errOr(net.ErrClosed)
		}
	}
}

func (st *Stream) returnCredit(n int) {
	if n > 0 {
		st.addCredit(n)
	}
}
