package mux

import "net"

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

// spliceChunk is the most one spliced frame carries.
const spliceChunk = 256 << 10

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
