// Package relay joins two connections: the one relay path that every door
// and link of rtcp goes through.
package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/sockio"
	"rtcp/internal/tcpreset"
)

// Aborter is a connection that can be cut off with an error its peer sees
// (an rtcp stream). A *net.TCPConn is cut off with a reset instead.
type Aborter interface {
	Abort(err error)
}

// Stats counts the bytes a Join moved, and says which direction failed.
type Stats struct {
	AtoB, BtoA int64
	// FailedAtoB is true when Join's error came from copying a to b
	// (reading a or writing b); false when it came from b to a, or there
	// was none.
	FailedAtoB bool
	// FailedWrite is true when Join's error came from writing the failed
	// copy's destination (b if FailedAtoB, else a): that side's
	// connection failed, not the source's, nor a Scanner's rules. Join
	// knows it where it moves the bytes itself: while a Scanner reads
	// the direction, where it copies through a buffer of its own (a
	// source with no fast path), and between two TCP connections, small
	// messages copied or bursts spliced. A stream that moves the bytes
	// itself (an rtcp stream's PushTo and SpliceFrom) reports a failure
	// of either end as its own (FailedWrite false).
	FailedWrite bool
}

// Join copies a to b and b to a until both directions end, then closes both.
// When one side ends cleanly (io.EOF) the other side is half-closed
// (CloseWrite), so half-close crosses the relay; a side that cannot
// half-close is closed. When a copy fails, both sides are cut off with the
// error (Abort, or a TCP reset), so neither peer mistakes the cut for a
// clean end. Join returns the byte counts and the first error.
// If count is not nil it is called with each chunk's size and direction,
// on the goroutine that moves the chunk, which may hold the source's
// read meanwhile: it must not block, nor close either side.
func Join(a, b net.Conn, count func(aToB bool, n int)) (Stats, error) {
	return JoinScanned(a, b, count, nil, nil)
}

// A Scanner reads the bytes of one direction of JoinScanned as they pass
// (the records of a brokered session, say), without holding them up: Join
// writes on each chunk as soon as it is read.
type Scanner interface {
	// Scan is given each chunk read from the direction's source, in
	// order, and returns how many of its first bytes are written on (it
	// may change them in place); the rest of the chunk is dropped. An
	// error cuts both sides with it.
	Scan(chunk []byte) (int, error)
	// Plain reports whether the direction's bytes pass as they are from
	// here on: Join then relays the rest, unread, with its fast paths.
	Plain() bool
	// End is told the source's clean end, before Join passes it on; an
	// error cuts both sides instead.
	End() error
}

// JoinScanned is Join with the bytes from a to b read by aToB, and those
// from b to a by bToA, until each says they are Plain; a nil Scanner
// reads nothing. The count of a scanned direction counts the bytes
// written on, not those dropped.
func JoinScanned(a, b net.Conn, count func(aToB bool, n int), aToB, bToA Scanner) (Stats, error) {
	var (
		st     Stats
		errA   error
		wfA    bool // errA came from writing a
		errB   error
		wfB    bool // errB came from writing b
		wg     sync.WaitGroup
		failed atomic.Bool // a copy failed: its cut must not race a clean close
		finA   atomic.Bool // Join has (or is about to have) half-closed a
		finB   atomic.Bool
	)
	// A direction whose source is an rtcp stream needs no goroutine: the
	// stream hands its bytes on from its link's read loop itself, and
	// starts a goroutine only while it has work the read loop must not
	// do (mux.Stream.PushAsync), so an idle session holds only the
	// goroutine of Join's caller, waiting for the other direction's
	// bytes. done runs on the stream's goroutine, where finish may block.
	// The other direction, or b to a if neither source is a stream, gets
	// a goroutine of its own.
	asyncB, asyncA := asyncSource(b, bToA), asyncSource(a, aToB)
	// Bytes that a side read ahead of its reader (with its link's
	// handshake) go first; taken before either direction starts, so
	// that both see the TCP connection under that side (Buffered). Not
	// from a side that PushAsync relays: it would not write them.
	var aheadA, aheadB []byte
	if asyncB == nil {
		aheadB = takeAhead(b, bToA)
	}
	if asyncB != nil || asyncA == nil {
		aheadA = takeAhead(a, aToB)
	}
	wg.Add(1)
	switch {
	case asyncB != nil:
		asyncB.PushAsync(a, counter(count, false), func(n int64, err error) {
			st.BtoA, errA = n, finish(a, b, err, &failed, &finA)
			wg.Done()
		})
	case asyncA != nil:
		asyncA.PushAsync(b, counter(count, true), func(n int64, err error) {
			st.AtoB, errB = n, finish(b, a, err, &failed, &finB)
			wg.Done()
		})
	default:
		go func() {
			defer wg.Done()
			if n, err, ended := writeAhead(a, b, aheadB, false, count, &failed, &finA); ended {
				st.BtoA, errA, wfA = n, err, err != nil
			} else if bToA == nil {
				st.BtoA, errA, wfA = pipePlain(a, b, false, count, &failed, &finA, &finB)
				st.BtoA += n
			} else {
				st.BtoA, errA, wfA = pipe(a, b, false, count, &failed, &finA, &finB, bToA)
				st.BtoA += n
			}
		}()
	}
	// An unscanned direction calls pipePlain itself, not through pipe:
	// an idle session's goroutine waits in pipePlain, and a GC shrinks a
	// goroutine's stack only while it uses under a quarter of it, so a
	// frame more under that wait can keep the stack at twice the size
	// (docs/performance.md). So does writeAhead's, which returns first.
	switch {
	case asyncB == nil && asyncA != nil:
		// a's bytes go by PushAsync above (a stream, which reads
		// nothing ahead); b's go here.
		if n, err, ended := writeAhead(a, b, aheadB, false, count, &failed, &finA); ended {
			st.BtoA, errA, wfA = n, err, err != nil
		} else if bToA == nil {
			st.BtoA, errA, wfA = pipePlain(a, b, false, count, &failed, &finA, &finB)
			st.BtoA += n
		} else {
			st.BtoA, errA, wfA = pipe(a, b, false, count, &failed, &finA, &finB, bToA)
			st.BtoA += n
		}
	default:
		if n, err, ended := writeAhead(b, a, aheadA, true, count, &failed, &finB); ended {
			st.AtoB, errB, wfB = n, err, err != nil
		} else if aToB == nil {
			st.AtoB, errB, wfB = pipePlain(b, a, true, count, &failed, &finB, &finA)
			st.AtoB += n
		} else {
			st.AtoB, errB, wfB = pipe(b, a, true, count, &failed, &finB, &finA, aToB)
			st.AtoB += n
		}
	}
	wg.Wait()
	if errA == nil && errB == nil {
		// A clean end: let the kernel deliver what is still queued, even on
		// a connection set to reset on close.
		graceful(a)
		graceful(b)
	}
	a.Close()
	b.Close()
	if errB != nil {
		st.FailedAtoB, st.FailedWrite = true, wfB
		return st, errB
	}
	st.FailedWrite = errA != nil && wfA
	return st, errA
}

// Buffered is a connection that may hold bytes read ahead of its reader
// (an rtcp.Conn whose link's handshake brought the session's first
// bytes; at the DP, a client's leg whose bytes came with its Connect or
// its ClientHello): TakeBuffered returns them, to be delivered before what Read
// returns after, and from then on the connection may carry the rest as
// its TCP connection does (tcpreset.Of). Join takes them before it
// reads.
type Buffered interface {
	TakeBuffered() []byte
}

// takeAhead takes the bytes that c read ahead, for a direction that
// sc does not scan (a scanner reads them with the rest).
func takeAhead(c net.Conn, sc Scanner) []byte {
	if b, ok := c.(Buffered); ok && sc == nil {
		return b.TakeBuffered()
	}
	return nil
}

// writeAhead writes ahead, what src read ahead, to dst, before the rest
// of the direction. A failed write ends the direction (ended; err is
// finish's).
func writeAhead(dst, src net.Conn, ahead []byte, dir bool, count func(bool, int), failed, dstFin *atomic.Bool) (n int64, err error, ended bool) {
	if len(ahead) == 0 {
		return 0, nil, false
	}
	k, err := dst.Write(ahead)
	if count != nil && k > 0 {
		count(dir, k)
	}
	if err != nil {
		return int64(k), finish(dst, src, err, failed, dstFin), true
	}
	return int64(k), nil, false
}

// pipe copies src to dst, read by sc (not nil) until it says the rest is
// plain; dir is the direction for count. wfail says that its error came
// from writing dst.
func pipe(dst, src net.Conn, dir bool, count func(bool, int), failed, dstFin, srcFin *atomic.Bool, sc Scanner) (n int64, err error, wfail bool) {
	n, err, ended, wfail := scan(dst, src, dir, count, srcFin, sc)
	if ended {
		err = finish(dst, src, err, failed, dstFin)
		return n, err, wfail && err != nil
	}
	m, err, wfail := pipePlain(dst, src, dir, count, failed, dstFin, srcFin)
	return n + m, err, wfail
}

// scan copies src to dst chunk by chunk through sc, until sc says the
// rest is plain (ended false) or the direction has ended (err nil: a
// clean end), or failed (wfail: writing dst).
func scan(dst, src net.Conn, dir bool, count func(bool, int), srcFin *atomic.Bool, sc Scanner) (n int64, err error, ended, wfail bool) {
	if ps := fastPath[pushSource](src); ps != nil {
		// An rtcp stream hands its chunks to the scanner itself, and
		// holds no buffer of the relay's while it has nothing.
		w := &scanWriter{dst: dst, sc: sc, dir: dir, count: count}
		_, err := ps.PushTo(w, nil)
		switch {
		case errors.Is(err, errPlain):
			return w.n, nil, false, false
		case err == nil:
			return w.n, sc.End(), true, false
		}
		return w.n, err, true, w.wfail
	}
	r := newChunkReader(src)
	defer r.close()
	write := sockio.WriterOf(dst).Write // a TCP destination's socket, raw
	for !sc.Plain() {
		chunk, rerr := r.read()
		if len(chunk) > 0 {
			k, serr := sc.Scan(chunk)
			if serr != nil {
				r.release()
				return n, serr, true, false
			}
			if k > 0 {
				nw, werr := write(chunk[:k])
				n += int64(nw)
				if count != nil && nw > 0 {
					count(dir, nw)
				}
				if werr != nil {
					r.release()
					return n, werr, true, true
				}
			}
		}
		r.release()
		switch {
		case rerr == io.EOF:
			if tc := tcpreset.Under(src); tc != nil && tcpreset.WasReset(tc) && !srcFin.Load() {
				return n, tcpreset.ErrReset, true, false // a reset, not an end: see package tcpreset
			}
			return n, sc.End(), true, false
		case rerr != nil:
			return n, rerr, true, false
		}
	}
	return n, nil, false, false
}

// errPlain ends a scanWriter's PushTo once its Scanner says the rest of
// the stream is plain: the rest goes by pipePlain's PushTo.
var errPlain = errors.New("relay: the rest of the stream is plain")

// scanWriter is the destination of a stream's PushTo while a Scanner
// reads it: it writes on to dst what the Scanner passes.
type scanWriter struct {
	dst   net.Conn
	sc    Scanner
	dir   bool
	count func(bool, int)
	n     int64 // bytes written to dst
	wfail bool  // a write of dst failed
}

// Write scans p and writes on what the Scanner passes; it returns
// len(p), the bytes it consumed, unless dst failed.
func (w *scanWriter) Write(p []byte) (int, error) {
	k, err := w.sc.Scan(p)
	if err != nil {
		return len(p), err
	}
	if k > 0 {
		nw, werr := w.dst.Write(p[:k])
		w.n += int64(nw)
		if w.count != nil && nw > 0 {
			w.count(w.dir, nw)
		}
		if werr != nil {
			w.wfail = true
			return nw, werr
		}
	}
	if w.sc.Plain() {
		return len(p), errPlain
	}
	return len(p), nil
}

// SetWriteDeadline lets the stream end a write to dst that the session's
// cut abandons (mux.Stream.PushTo).
func (w *scanWriter) SetWriteDeadline(t time.Time) error { return w.dst.SetWriteDeadline(t) }

// pipePlain copies src to dst as they are; wfail says that its error
// came from writing dst, where it writes dst itself.
func pipePlain(dst, src net.Conn, dir bool, count func(bool, int), failed, dstFin, srcFin *atomic.Bool) (n int64, err error, wfail bool) {
	if dt, st := tcpreset.Of(dst), tcpreset.Of(src); dt != nil && st != nil {
		// Both are TCP: small messages are copied, bulk is spliced.
		n, err, wfail = copyTCP(dt, st, srcFin, func(k int64) {
			if count != nil && k > 0 {
				count(dir, int(k))
			}
		})
		if err == nil && tcpreset.WasReset(st) && !srcFin.Load() {
			err = tcpreset.ErrReset // a reset, not an end: see package tcpreset
		}
		err = finish(dst, src, err, failed, dstFin)
		return n, err, wfail && err != nil
	}
	if sd := fastPath[spliceDst](dst); sd != nil {
		if stc := tcpreset.Of(src); stc != nil {
			// TCP into a stream of a binary wire on a TCP link (yamux):
			// the stream splices each frame's bytes from src to the link.
			n, ok, err := sd.SpliceFrom(stc, func(k int) {
				if count != nil {
					count(dir, k)
				}
			})
			if ok {
				if err == nil && tcpreset.WasReset(stc) && !srcFin.Load() {
					err = tcpreset.ErrReset // a reset, not an end: see package tcpreset
				}
				return n, finish(dst, src, err, failed, dstFin), false
			}
		}
	}
	if ps := fastPath[pushSource](src); ps != nil {
		// An rtcp stream hands its bytes on itself, from its link's read
		// loop where it can (mux.Stream.PushTo): no buffer, copy or
		// wake-up of this goroutine per chunk.
		n, err = ps.PushTo(dst, func(k int) {
			if count != nil {
				count(dir, k)
			}
		})
		return n, finish(dst, src, err, failed, dstFin), false
	}
	if wt, ok := src.(io.WriterTo); ok && tcpreset.Of(src) == nil {
		// Any other source that writes itself out: counted when the copy
		// ends.
		n, err = wt.WriteTo(dst)
		if count != nil && n > 0 {
			count(dir, int(n))
		}
		return n, finish(dst, src, err, failed, dstFin), false
	}
	r := newChunkReader(src)
	defer r.close()
	write := sockio.WriterOf(dst).Write // a TCP destination's socket, raw
	for {
		chunk, rerr := r.read()
		if len(chunk) > 0 {
			nw, werr := write(chunk)
			n += int64(nw)
			if count != nil && nw > 0 {
				count(dir, nw)
			}
			if werr != nil {
				r.release()
				err, wfail = werr, true
				break
			}
		}
		r.release()
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			} else if tc := tcpreset.Under(src); tc != nil && tcpreset.WasReset(tc) && !srcFin.Load() {
				// Under: through TLS too, whose read of a bare end
				// is io.EOF.
				err = tcpreset.ErrReset // a reset, not an end: see package tcpreset
			}
			break
		}
	}
	err = finish(dst, src, err, failed, dstFin)
	return n, err, wfail && err != nil
}

func finish(dst, src net.Conn, err error, failed, dstFin *atomic.Bool) error {
	if err == nil && failed.Load() {
		// The other direction failed and cuts both sides; this "end" may
		// be the reset it took (tcpreset), closed under us since.
		return nil
	}
	if err == nil {
		if tcpreset.SendsFIN(dst) {
			dstFin.Store(true) // before the FIN leaves: see pipe's reset check
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cerr := cw.CloseWrite()
			if cerr == nil {
				return nil
			}
			if tcpreset.Is(cerr) {
				// dst's peer reset it, and the half-close took
				// the reset (TLS's writes close_notify): the
				// session was cut there, which closing both
				// would pass on as a clean end.
				failed.Store(true)
				cut(dst, cerr)
				cut(src, cerr)
				return cerr
			}
		}
		// No half-close on dst: the only way to pass the end on is to close.
		dst.Close()
		return nil
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		// We, or the other direction, closed one side (a net.Pipe says
		// so with io.ErrClosedPipe): not a fault. But
		// when the other direction failed and is cutting both sides, a
		// clean Close here could reach a peer before the cut does.
		if !failed.Load() {
			dst.Close()
			src.Close()
		}
		return nil
	}
	failed.Store(true)
	cut(dst, err)
	cut(src, err)
	return err
}

// graceful undoes, for a connection that ends cleanly, the reset it was
// set to end with if cut: on its TCP socket (under TLS too), or through
// its own SetReset where it wraps one that the relay must not see (a
// paced session).
func graceful(c net.Conn) {
	if r, ok := c.(interface{ SetReset(on bool) }); ok {
		r.SetReset(false)
		return
	}
	tcpreset.SetReset(tcpreset.Under(c), false)
}

// A pushSource writes its bytes to a writer itself, calling count with
// the size of each piece (an rtcp stream: mux.Stream.PushTo).
type pushSource interface {
	PushTo(w io.Writer, count func(n int)) (int64, error)
}

// counter returns count for one direction, for a pushSource.
func counter(count func(aToB bool, n int), dir bool) func(n int) {
	return func(n int) {
		if count != nil {
			count(dir, n)
		}
	}
}

// An asyncPushSource is a pushSource that needs no goroutine of the
// caller's: it calls done with what PushTo would return
// (mux.Stream.PushAsync).
type asyncPushSource interface {
	PushAsync(w io.Writer, count func(n int), done func(n int64, err error))
}

// asyncSource returns src as an asyncPushSource where pipePlain would
// copy it with its PushTo, or nil: the direction is not scanned (sc
// nil), and src is no TCP connection (which pipePlain copies or splices).
func asyncSource(src net.Conn, sc Scanner) asyncPushSource {
	if sc != nil || tcpreset.Of(src) != nil {
		return nil
	}
	ps, _ := fastPath[pushSource](src).(asyncPushSource)
	return ps
}

// A spliceDst sends a TCP connection's bytes itself, moving them in the
// kernel where its wire allows (mux.Stream.SpliceFrom); ok false means it
// cannot and has read nothing.
type spliceDst interface {
	SpliceFrom(src *net.TCPConn, count func(n int)) (n int64, ok bool, err error)
}

// A Carrier is a connection that carries another, whose fast paths the
// relay then uses: an rtcp *Conn returns its stream (a *mux.Stream), or
// nil. Only a stream's fast paths are taken from it (PushTo, SpliceFrom,
// which move the stream's bytes, the Carrier's own), never a TCP
// connection's: a *tls.Conn, or a connection read ahead, has the method
// too, but its bytes are not those of the connection under it.
type Carrier interface {
	NetConn() net.Conn
}

// fastPath returns c, or the connection it carries, as a T: one of the
// fast paths above, or T's zero value.
func fastPath[T any](c net.Conn) T {
	if v, ok := c.(T); ok {
		return v
	}
	if _, ok := c.(*tls.Conn); ok {
		var zero T
		return zero
	}
	if cr, ok := c.(Carrier); ok {
		if v, ok := cr.NetConn().(T); ok {
			return v
		}
	}
	var zero T
	return zero
}

// cut ends c so that its peer sees an error, not a clean end: an
// Aborter with err; else the Aborter under its layers (a WebSocket under
// TLS, or under a buffer of bytes read with a handshake), cut before the
// layer's Close could say a clean goodbye; else with a reset of the TCP
// connection under it, which a layer over it (TLS) must not end with a
// clean goodbye first either (tcpreset.Reset).
func cut(c net.Conn, err error) {
	if a, ok := c.(Aborter); ok {
		a.Abort(err)
		return
	}
	if a := aborterUnder(c); a != nil {
		a.Abort(err)
		c.Close()
		return
	}
	tcpreset.Reset(c)
}

// CutOff ends c so that its peer sees an error, not a clean end, as Join
// cuts a side whose copy failed.
func CutOff(c net.Conn, err error) { cut(c, err) }

// aborterUnder returns the first Aborter under c through the layers that
// say what they carry (NetConn() net.Conn, as tcpreset.Under goes), or
// nil: nil too where a TCP connection comes first, which tcpreset.Reset
// cuts.
func aborterUnder(c net.Conn) Aborter {
	for tcpreset.Of(c) == nil {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		if c = nc.NetConn(); c == nil {
			return nil
		}
		if a, ok := c.(Aborter); ok {
			return a
		}
	}
	return nil
}

// Between two TCP connections copyTCP reads what src has into a small
// buffer and writes it, while what comes is small (requests and answers
// of a few bytes: a read and a write cost less than two splices and their
// pipe); a read that fills the buffer starts a bulk transfer, spliced in
// the kernel (mux.BulkSplicer) until a splice brings little again. Neither
// holds a buffer or a pipe while src has nothing: an idle relay costs its
// two sockets only, where io.Copy's splice holds a pipe (two descriptors)
// per direction while it waits. count is called with each piece; wfail
// says that its error came from dst (a write or a splice to it), not
// from src. srcFin says that Join has half-closed src (see resetWatch).
func copyTCP(dst, src *net.TCPConn, srcFin *atomic.Bool, count func(int64)) (n int64, err error, wfail bool) {
	raw := newRawReader(src)
	if raw == nil {
		sr := srcReader{r: src}
		n, err := io.Copy(dst, &sr)
		count(n)
		return n, err, err != nil && sr.err == nil
	}
	dstRC, rcErr := dst.SyscallConn()
	if rcErr != nil {
		return 0, rcErr, true
	}
	write := sockio.WriterOf(dst).Write      // a TCP destination's socket, raw
	watch := newResetWatch(dst, src, srcFin) // src's reset ends a wait for dst
	var (
		bulk  *mux.BulkSplicer // made at the first burst
		tried bool
	)
	for {
		c := raw.copySmall(&smallPool, dstRC, count)
		n += c.n
		if c.rest != nil {
			// dst takes no more now: wait for room, under the watch.
			w, werr, srcReset := watch.write(write, c.rest)
			smallPool.Put(c.bp)
			n += int64(w)
			count(int64(w))
			if werr != nil {
				return n, werr, !srcReset
			}
		}
		if c.wfail {
			return n, c.err, true
		}
		if c.err == io.EOF {
			return n, nil, false
		}
		if c.err != nil {
			return n, c.err, false
		}
		if !c.burst {
			continue
		}
		if !tried {
			bulk, tried = mux.NewBulkSplicer(dst, src), true
			if bulk != nil && watch != nil {
				bulk.Watch = watch.start
			}
		}
		var (
			m         int64
			eof, ok   bool
			dstFailed bool
		)
		if bulk != nil {
			m, eof, ok, dstFailed, err = bulk.Splice(count)
			n += m
		}
		if !ok {
			// No pipe to be had (or not Linux): copy, telling src's
			// errors from dst's.
			sr := srcReader{r: src}
			m, err = io.CopyN(dst, &sr, bulkChunk)
			n += m
			count(m)
			eof = err == io.EOF
			if eof {
				err = nil
			}
			dstFailed = err != nil && sr.err == nil
		}
		if eof {
			return n, err, false
		}
		if err != nil {
			return n, err, dstFailed
		}
	}
}

// srcReader reads r, keeping its error other than io.EOF: a copy's
// error that is not it came from the destination.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
