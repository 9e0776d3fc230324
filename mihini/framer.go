package mihini

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"rtcp/internal/mux"
	wire "rtcp/protocol/mihini"
)

// The state of one client id on a link, as this side sees it. The session
// layer knows which streams are open; the framer knows the rest of the
// wire's story: whose CLOSE is still unanswered, and (on the device side)
// DATA that came before its CONNECT.
type idState uint8

const (
	idFree       idState = iota
	idOpen               // a session runs on the id
	idPeerClosed         // the peer sent CLOSE; our answer is queued
	idClosing            // we sent CLOSE; the peer's answer has not come
	idEarly              // device: DATA came before the CONNECT; it is buffered
	idRefused            // device: early DATA overflowed; the id is refused until the peer's CLOSE
)

type idEntry struct {
	state idState
	since time.Time // idClosing, idRefused: when our CLOSE went out
	early []byte    // idEarly
}

// framer carries a mux session over a Mihini link. It keeps the wire's
// rules that the session layer does not know (SPEC.md, "Sessions"): the
// close handshake, the grace after which an unanswered CLOSE frees its id,
// and on the device side the buffering of DATA that arrives before its
// CONNECT.
type framer struct {
	device   bool
	r        *wire.Reader
	bw       *bufio.Writer
	grace    time.Duration
	earlyMax int
	log      *slog.Logger

	mu   sync.Mutex
	ids  [256]idEntry
	last uint8 // server: the id CONNECT used last; the next is last+1

	// Read side, used only by ReadFrame's goroutine.
	f         mux.Frame
	afterOpen []byte // device: early DATA to hand over after the open
	out       []byte // write side: one encoded frame
}

func newFramer(device bool, r *wire.Reader, w io.Writer, grace time.Duration, earlyMax int, log *slog.Logger) *framer {
	return &framer{
		device:   device,
		r:        r,
		bw:       bufio.NewWriterSize(w, 32<<10),
		grace:    grace,
		earlyMax: earlyMax,
		log:      log,
	}
}

// expired reports whether e is a CLOSE of ours that the peer has left
// unanswered for the grace period: the id is free again. An original peer
// never answers.
func (fr *framer) expired(e *idEntry) bool {
	return (e.state == idClosing || e.state == idRefused) && time.Since(e.since) >= fr.grace
}

// nextID picks the id of a new client on the server side: the one after
// the last, in the order 1..255, 0, skipping ids whose session is open or
// whose close has not finished. It is the session's NextID (Semantics).
func (fr *framer) nextID(_, _ string, inUse func(int64) bool) (int64, error) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	for range 256 {
		id := fr.last + 1 // wraps from 255 to 0
		fr.last = id
		e := &fr.ids[id]
		if inUse(int64(id)) {
			continue
		}
		if e.state == idFree || fr.expired(e) {
			*e = idEntry{}
			return int64(id), nil
		}
	}
	return 0, errors.New("mihini: all 256 client ids of the device link are in use or closing; the client is refused, retry when others have ended")
}

// ReadFrame returns the next frame the session must see, handling the rest
// of the wire here.
func (fr *framer) ReadFrame() (*mux.Frame, error) {
	if fr.afterOpen != nil {
		fr.f = mux.Frame{Kind: mux.KindData, ID: fr.f.ID, Data: fr.afterOpen}
		fr.afterOpen = nil
		return &fr.f, nil
	}
	for {
		f, err := fr.r.ReadFrame()
		if err != nil {
			if !errors.Is(err, wire.ErrInvalidFrame) {
				return nil, err
			}
			if fr.device && f.Command == wire.Connect {
				// A CONNECT we cannot parse still names a client: open
				// it with no address, and the device refuses it with
				// CLOSE (SPEC.md, "Invalid frames").
				fr.log.Warn("mihini: bad CONNECT from the server; answering CLOSE", "client", f.Client, "err", err)
				if g := fr.connect(f.Client, ""); g != nil {
					return g, nil
				}
				continue
			}
			return nil, &mux.ProtocolError{Msg: err.Error()}
		}
		if g, err := fr.handle(f); g != nil || err != nil {
			return g, err
		}
	}
}

// handle applies one frame from the peer; it returns the frame the
// session must see, or nil for a frame that ends here.
func (fr *framer) handle(f wire.Frame) (*mux.Frame, error) {
	id := f.Client
	switch f.Command {
	case wire.Listen:
		if fr.device {
			return nil, &mux.ProtocolError{Msg: "mihini: the server sent LISTEN; only a device sends it"}
		}
		return nil, nil // a second LISTEN means nothing
	case wire.Connect:
		if !fr.device {
			return nil, &mux.ProtocolError{Msg: fmt.Sprintf("mihini: the device sent CONNECT for client %d; only the server side sends it", id)}
		}
		host, port, _ := wire.ParseConnect(f.Payload) // the Reader has checked it
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if h, _, err := net.SplitHostPort(addr); err != nil || h != host {
			// Text no dialer can take as a host (such as "]"): the
			// device refuses it as it refuses a malformed CONNECT.
			fr.log.Warn("mihini: CONNECT names no usable host; answering CLOSE", "client", id, "host", host)
			addr = ""
		}
		return fr.connect(id, addr), nil
	case wire.Data:
		return fr.data(id, f.Payload), nil
	case wire.Close:
		return fr.close(id), nil
	}
	return nil, nil // the Reader reports every other command as invalid
}

// connect starts the session of a CONNECT on the device side; addr is ""
// for a CONNECT that could not be parsed.
func (fr *framer) connect(id uint8, addr string) *mux.Frame {
	fr.mu.Lock()
	e := &fr.ids[id]
	if e.state == idRefused && !fr.expired(e) {
		// Its early DATA overflowed and we sent CLOSE: this CONNECT
		// belongs to the session we refused.
		fr.mu.Unlock()
		return nil
	}
	early := e.early
	if e.state != idEarly || addr == "" {
		early = nil
	}
	*e = idEntry{state: idOpen}
	fr.mu.Unlock()
	fr.f = mux.Frame{Kind: mux.KindOpen, ID: int64(id), Addr: addr}
	if len(early) > 0 {
		fr.afterOpen = early
	}
	return &fr.f
}

func (fr *framer) data(id uint8, p []byte) *mux.Frame {
	if len(p) == 0 {
		return nil
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	e := &fr.ids[id]
	if fr.expired(e) {
		*e = idEntry{}
	}
	switch e.state {
	case idOpen:
		fr.f = mux.Frame{Kind: mux.KindData, ID: int64(id), Data: p}
		return &fr.f
	case idFree, idEarly:
		if !fr.device {
			return nil // the server side skips DATA for a client it does not know
		}
		if len(e.early)+len(p) > fr.earlyMax {
			// Refuse the client: DATA for a stream the session does not
			// have makes it answer with a Close, which goes out as CLOSE.
			*e = idEntry{state: idRefused, since: time.Now()}
			fr.log.Warn("mihini: more DATA before its CONNECT than the device buffers; answering CLOSE", "client", id, "limit", fr.earlyMax)
			fr.f = mux.Frame{Kind: mux.KindData, ID: int64(id), Data: p}
			return &fr.f
		}
		e.state = idEarly
		e.early = append(e.early, p...)
	}
	// idClosing, idPeerClosed, idRefused: DATA of a session that has ended.
	return nil
}

func (fr *framer) close(id uint8) *mux.Frame {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	e := &fr.ids[id]
	switch e.state {
	case idOpen:
		e.state = idPeerClosed
		fr.f = mux.Frame{Kind: mux.KindClose, ID: int64(id)}
		return &fr.f
	case idClosing, idRefused, idEarly:
		// The answer to our CLOSE, or the end of a client whose CONNECT
		// never came: the id is free, and nothing is answered.
		*e = idEntry{}
	}
	return nil // a CLOSE for an unknown id is never answered
}

// WriteFrame writes what the session sends, as the wire has it.
func (fr *framer) WriteFrame(f *mux.Frame) error {
	if f.ID < 0 || f.ID > 255 {
		return nil // a link-wide Close: the wire has no such frame
	}
	id := uint8(f.ID)
	var err error
	switch f.Kind {
	case mux.KindOpen:
		fr.mu.Lock()
		fr.ids[id] = idEntry{state: idOpen}
		fr.mu.Unlock()
		payload, err := connectPayload(nil, f.Addr)
		if err != nil {
			return err // Server checks the address before it opens
		}
		fr.out, _ = wire.AppendFrame(fr.out[:0], wire.Frame{Command: wire.Connect, Client: id, Payload: payload})
		if _, err := fr.bw.Write(fr.out); err != nil {
			return err
		}
	case mux.KindData:
		fr.mu.Lock()
		open := fr.ids[id].state == idOpen
		fr.mu.Unlock()
		for p := f.Data; open && len(p) > 0 && err == nil; {
			n := min(len(p), wire.MaxPayload)
			fr.out, _ = wire.AppendFrame(fr.out[:0], wire.Frame{Command: wire.Data, Client: id, Payload: p[:n]})
			_, err = fr.bw.Write(fr.out)
			p = p[n:]
		}
	case mux.KindClose:
		fr.mu.Lock()
		e := &fr.ids[id]
		send := true
		switch e.state {
		case idOpen, idRefused:
			*e = idEntry{state: e.state, since: time.Now()}
			if e.state == idOpen {
				e.state = idClosing
			}
		case idPeerClosed:
			*e = idEntry{} // our answer: the id is free at both ends
		default:
			send = false // each side sends CLOSE for a session at most once
		}
		fr.mu.Unlock()
		if send {
			fr.out, _ = wire.AppendFrame(fr.out[:0], wire.Frame{Command: wire.Close, Client: id})
			_, err = fr.bw.Write(fr.out)
		}
	}
	return err
}

func (fr *framer) Flush() error { return fr.bw.Flush() }

// Semantics says how Mihini's wire works: the server picks a new client's
// id in its CONNECT (nextID; a device opens nothing), and a Close is a
// handshake, so that both ends learn when a client id is free again.
func (fr *framer) Semantics() mux.Semantics {
	next := fr.nextID
	if fr.device {
		next = func(string, string, func(int64) bool) (int64, error) {
			return 0, errors.New("mihini: a device opens no sessions")
		}
	}
	return mux.Semantics{OpenerAssignsID: true, NextID: next, AnswerClose: true}
}

// connectPayload appends the CONNECT payload for addr, host:port.
func connectPayload(dst []byte, addr string) ([]byte, error) {
	host, port, err := splitService(addr)
	if err != nil {
		return dst, err
	}
	return wire.AppendConnect(dst, host, port)
}

// splitService splits a service address, host:port, into what CONNECT
// carries. The host must not be empty: the device would dial itself.
func splitService(addr string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("mihini: service address %q: %v; want host:port", addr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("mihini: service address %q: port %q is not a number from 1 to 65535", addr, p)
	}
	if host == "" {
		return "", 0, fmt.Errorf("mihini: service address %q has no host; name the host the device should dial, such as 127.0.0.1", addr)
	}
	if _, err := wire.AppendConnect(nil, host, uint16(port)); err != nil {
		return "", 0, err
	}
	return host, uint16(port), nil
}
