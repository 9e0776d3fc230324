package tcpipe

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"

	"rtcp/internal/mux"
	wire "rtcp/protocol/tcpipe"
)

// peerBase separates the two sessions a port can carry at once in the
// session layer's IDs: the connection this instance accepted on port P is
// stream P, and the one it made to its target for the partner's
// connection on P is stream peerBase+P. On the wire the port is the id and
// the local flag tells the two apart.
const peerBase = 1 << 16

// framer carries a mux session over a tcpipe partner link. It maps stream
// IDs to (port, local flag) and back, and keeps the original's rules the
// session layer does not know (SPEC.md, "Behaviour"): a Connect for a port
// whose made connection is open is ignored, and Data or Disconnect for a
// connection that is not open is dropped and never answered.
type framer struct {
	r  *wire.Reader
	bw *bufio.Writer

	// heard, if set, is told of the partner's first Data for a connection
	// this instance accepted, since its Connect (end false), and of every
	// Disconnect for an accepted connection, open or not (end true). It
	// runs on the read loop, and must be quick.
	heard func(port uint16, end bool)

	mu     sync.Mutex
	open   map[int64]bool // streams open on the wire
	silent map[int64]bool // accepted streams the partner has not spoken of since their Connect

	f   mux.Frame // returned by ReadFrame
	out []byte    // one encoded frame
}

func newFramer(r io.Reader, w io.Writer) *framer {
	return &framer{
		r:      wire.NewReader(r),
		bw:     bufio.NewWriterSize(w, 32<<10),
		open:   make(map[int64]bool),
		silent: make(map[int64]bool),
	}
}

// streamID is the stream a frame from the partner is about. local is the
// frame's flag: the receiver's (our) accepted connection.
func streamID(port uint16, local bool) int64 {
	if local {
		return int64(port)
	}
	return peerBase + int64(port)
}

// portID is the session's NextID (Semantics): the stream of a connection
// this instance accepted is its port.
func portID(_, addr string, inUse func(int64) bool) (int64, error) {
	port, err := strconv.ParseUint(addr, 10, 16)
	if err != nil {
		return 0, errors.New("tcpipe: the port of a new connection is not a number")
	}
	if inUse(int64(port)) {
		return 0, errors.New("tcpipe: port " + addr + " already carries a connection")
	}
	return int64(port), nil
}

func (fr *framer) isOpen(id int64) bool {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.open[id]
}

// dataFor reports whether Data for stream id goes to the session, and
// whether it is the first the partner sends for it.
func (fr *framer) dataFor(id int64) (open, first bool) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	open, first = fr.open[id], fr.silent[id]
	if first {
		delete(fr.silent, id)
	}
	return open, first
}

// ReadFrame returns the next frame the session must see.
func (fr *framer) ReadFrame() (*mux.Frame, error) {
	for {
		f, err := fr.r.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrInvalidFrame) || errors.Is(err, wire.ErrCorrupt) {
				// Not a tcpipe partner, or a stream out of step: the link
				// is lost (SPEC.md, "Invalid frames").
				return nil, &mux.ProtocolError{Msg: err.Error()}
			}
			return nil, err
		}
		id := streamID(f.Port, f.Local)
		switch f.Kind {
		case wire.Connect:
			fr.mu.Lock()
			dup := fr.open[id]
			fr.open[id] = true
			fr.mu.Unlock()
			if dup {
				continue // the original ignores it too
			}
			fr.f = mux.Frame{Kind: mux.KindOpen, ID: id, Addr: strconv.Itoa(int(f.Port))}
			return &fr.f, nil
		case wire.Data:
			if len(f.Data) == 0 {
				continue
			}
			open, first := fr.dataFor(id)
			if !open {
				continue // Data crossing our Disconnect on the wire
			}
			if first && fr.heard != nil {
				fr.heard(f.Port, false)
			}
			fr.f = mux.Frame{Kind: mux.KindData, ID: id, Data: f.Data}
			return &fr.f, nil
		case wire.Disconnect:
			fr.mu.Lock()
			was := fr.open[id]
			delete(fr.open, id)
			delete(fr.silent, id)
			fr.mu.Unlock()
			if f.Local && fr.heard != nil {
				fr.heard(f.Port, true)
			}
			if !was {
				continue
			}
			fr.f = mux.Frame{Kind: mux.KindClose, ID: id}
			return &fr.f, nil
		}
	}
}

// WriteFrame writes what the session sends, as the wire has it.
func (fr *framer) WriteFrame(f *mux.Frame) error {
	if f.ID < 0 || f.ID >= 2*peerBase {
		return nil // a link-wide Close: the wire has no such frame
	}
	port := uint16(f.ID % peerBase)
	// The receiver's view: our accepted connection is the one it made.
	local := f.ID >= peerBase
	switch f.Kind {
	case mux.KindOpen:
		fr.mu.Lock()
		fr.open[f.ID] = true
		fr.silent[f.ID] = true // only accepted streams are opened here
		fr.mu.Unlock()
		return fr.write(wire.Frame{Kind: wire.Connect, Port: port})
	case mux.KindData:
		if !fr.isOpen(f.ID) {
			return nil
		}
		for p := f.Data; len(p) > 0; {
			n := min(len(p), wire.MaxData)
			if err := fr.write(wire.Frame{Kind: wire.Data, Local: local, Port: port, Data: p[:n]}); err != nil {
				return err
			}
			p = p[n:]
		}
	case mux.KindClose:
		fr.mu.Lock()
		was := fr.open[f.ID]
		delete(fr.open, f.ID)
		delete(fr.silent, f.ID)
		fr.mu.Unlock()
		if was { // at most one Disconnect per connection
			return fr.write(wire.Frame{Kind: wire.Disconnect, Local: local, Port: port})
		}
	}
	return nil
}

func (fr *framer) write(f wire.Frame) error {
	var err error
	if fr.out, err = wire.AppendFrame(fr.out[:0], f); err != nil {
		return err
	}
	_, err = fr.bw.Write(fr.out)
	return err
}

func (fr *framer) Flush() error { return fr.bw.Flush() }

// Semantics says how tcpipe's wire works: the instance that accepted a
// connection opens its stream, whose ID is the connection's port (portID),
// with no answer on the wire.
func (fr *framer) Semantics() mux.Semantics {
	return mux.Semantics{OpenerAssignsID: true, NextID: portID}
}
