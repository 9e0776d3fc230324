package mux

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"rtcp/internal/sockio"
)

// SpliceFrom sends src's bytes on the stream until src's end (it returns
// nil) or an error, the way a relay between two TCP connections does.
// Small reads (requests, replies) are copied through a pooled buffer: a
// splice would cost three system calls where a read costs one. Once a
// read fills that buffer, src is a bulk transfer: each frame's bytes go
// from src's socket to the link's socket inside the kernel (splice(2)
// through a pooled pipe), and only the frame's header is written from
// user space, until a splice comes back small. It needs a
// flow-controlled wire whose Framer is a DataHeaderWriter (yamux) running
// on a *net.TCPConn; otherwise it returns ok false at once, having read
// nothing. The stream's credit
// bounds each frame, as for Write. Nothing else may write the stream
// while SpliceFrom runs. n, and count, include what Write would count:
// the bytes of a frame the link took before a write to it failed.
func (st *Stream) SpliceFrom(src *net.TCPConn, count func(n int)) (n int64, ok bool, err error) {
	s := st.s
	hw, isHW := s.fr.(DataHeaderWriter)
	link := tcpConnOf(s.c)
	if !isHW || !s.cfg.FlowControl || link == nil {
		return 0, false, nil
	}
	srcRC, err1 := src.SyscallConn()
	linkRC, err2 := link.SyscallConn()
	if err1 != nil || err2 != nil || !sockio.NonBlocking(srcRC) || !sockio.NonBlocking(linkRC) {
		return 0, false, nil
	}
	var batch []*Frame
	bulk := false
	for {
		if !bulk {
			k, err := st.takeCredit(smallSplice)
			if err != nil {
				return n, true, st.opErr("write", err)
			}
			got, err := st.copySmall(srcRC, k)
			st.returnCredit(k - got)
			n += int64(got)
			if count != nil && got > 0 {
				count(got)
			}
			if err != nil || got == 0 {
				return n, true, err
			}
			bulk = got == smallSplice
			continue
		}
		k, err := st.takeCredit(spliceChunk)
		if err != nil {
			return n, true, st.opErr("write", err)
		}
		p, got, err := spliceIn(srcRC, k)
		if err == errNoPipe {
			// Out of descriptors for a pipe: copy this piece instead.
			got, err = st.copyIn(src, k)
			st.returnCredit(k - got)
			if got > 0 {
				n += int64(got)
				if count != nil {
					count(got)
				}
			}
			if err != nil || got == 0 {
				return n, true, err
			}
			continue
		}
		st.returnCredit(k - got)
		if err != nil {
			return n, true, err
		}
		if got == 0 {
			return n, true, nil // src's end
		}
		bulk = got >= smallSplice
		sent := 0
		if got <= smallSplice {
			// A small frame: header and bytes in one write (a header
			// sent alone is a segment of its own, and latency).
			sent, err = st.writeFromPipe(p, got)
		} else {
			batch, sent, err = st.spliceOut(hw, linkRC, p, got, batch)
		}
		n += int64(sent)
		if count != nil && sent > 0 {
			count(sent)
		}
		if err != nil {
			return n, true, err
		}
	}
}

// spliceIn moves up to max bytes from src into a pipe, waiting for src
// to have some. The pipe is taken from the pool only once there are
// bytes, so a waiting stream holds none. got is 0 at src's end.
func spliceIn(src syscall.RawConn, max int) (p *pipe, got int, err error) {
	var serr error
	rerr := src.Read(func(fd uintptr) bool {
		p = getPipe()
		if p == nil {
			serr = errNoPipe
			return true
		}
		for {
			var m int64
			m, serr = sockio.Splice(int(fd), p.w, max, spliceNonblock|spliceMove)
			if serr == syscall.EINTR {
				continue
			}
			got = int(max64(m, 0))
			break
		}
		if serr == syscall.EAGAIN {
			putPipe(p, 0)
			p = nil
			return false // nothing to read: wait, without the pipe
		}
		return true
	})
	switch {
	case rerr != nil:
		err = rerr
	case serr == errNoPipe:
		err = errNoPipe // as it is: the caller copies instead
	case serr != nil:
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("splice", serr)}
	}
	if err != nil || got == 0 {
		putPipe(p, 0)
		return nil, 0, err
	}
	return p, got, nil
}

// smallSplice is the largest frame SpliceFrom sends from user space.
const smallSplice = 32 << 10

var smallPool = sync.Pool{New: func() any { b := make([]byte, smallSplice); return &b }}

// copySmall reads up to max bytes of src into a pooled buffer, waiting
// for src to have some, and writes them as Data. The buffer is taken only
// once there are bytes, so a waiting stream holds none. got is 0 at src's
// end.
//
// Reading on after a short read would save the read that fails with
// EAGAIN before the wait, but not safely: a short read can leave src's
// FIN (or a reset) unread, with no readiness to come for it.
func (st *Stream) copySmall(src syscall.RawConn, max int) (got int, err error) {
	var (
		bp   *[]byte
		rerr error
	)
	err = src.Read(func(fd uintptr) bool {
		bp = smallPool.Get().(*[]byte)
		for {
			got, rerr = sockio.Read(int(fd), (*bp)[:min(max, smallSplice)])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			smallPool.Put(bp)
			bp = nil
			return false // nothing to read: wait, without the buffer
		}
		return true
	})
	if bp != nil {
		defer smallPool.Put(bp)
	}
	switch {
	case err != nil: // closed, or a deadline
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case got <= 0:
		return 0, nil
	}
	if sent, err := st.s.writeData(st, (*bp)[:got], st.wd.Wait()); err != nil {
		return sent, st.opErr("write", err)
	}
	return got, nil
}

// copyIn reads up to max bytes of src and writes them as Data: SpliceFrom's
// way when there is no pipe to be had. got is 0 at src's end.
func (st *Stream) copyIn(src *net.TCPConn, max int) (got int, err error) {
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	m, rerr := src.Read((*bp)[:min(max, smallSplice)])
	if m > 0 {
		if sent, err := st.s.writeData(st, (*bp)[:m], st.wd.Wait()); err != nil {
			return sent, st.opErr("write", err)
		}
	}
	if rerr == io.EOF {
		return m, nil
	}
	return m, rerr
}

// writeFromPipe reads the n bytes in p and writes them as Data; it
// returns how many of them were sent (writeData).
func (st *Stream) writeFromPipe(p *pipe, n int) (int, error) {
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	b := (*bp)[:n]
	for off := 0; off < n; {
		m, err := sockio.Read(p.r, b[off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			putPipe(p, n-off)
			return 0, st.opErr("write", os.NewSyscallError("read", err))
		}
		off += m
	}
	putPipe(p, 0)
	return st.s.writeData(st, b, st.wd.Wait())
}

// spliceOut writes the queued frames, then a Data header for n bytes and
// the n bytes from p, holding the link's writer lock throughout, and
// returns how many of the n bytes the link took. It waits for that lock
// as a direct write does (waitLink): another writer may hold it on a link
// whose peer has stopped reading, and the stream's Close, its write
// deadline and the session's end give the wait up. A failure ends the
// link (it may have half a frame on it): the bytes spliced after the
// header count as sent all the same, for a peer on a DataHeaderWriter's
// wire may read them (Session.sent).
func (st *Stream) spliceOut(hw DataHeaderWriter, link syscall.RawConn, p *pipe, n int, batch []*Frame) ([]*Frame, int, error) {
	s := st.s
	if err := s.waitLink(st, st.wd.Wait()); err != nil {
		putPipe(p, n)
		return batch, 0, st.opErr("write", err)
	}
	s.qmu.Lock()
	closing := s.qclose
	// The stream may have ended while src was read: its end is queued
	// (enqueueStreamEnd marks it under qmu), and no data may follow it.
	werr := st.writeErr()
	s.qmu.Unlock()
	if closing || werr != nil {
		s.wmu.Unlock()
		putPipe(p, n)
		if werr == nil {
			werr = s.errOr(net.ErrClosed)
		}
		return batch, 0, st.opErr("write", werr)
	}
	batch, err := s.writeQueued(batch)
	if err == nil {
		// The stream may have ended while this took the queue: its end
		// is marked before its frame is queued, so if that frame was in
		// the batch just written, no data may follow it.
		s.qmu.Lock()
		werr = st.writeErr()
		s.qmu.Unlock()
		if werr != nil {
			err = s.fr.Flush()
			s.wmu.Unlock()
			release(batch)
			putPipe(p, n)
			if err != nil {
				s.writeFailed(err)
				s.wake()
			}
			return batch, 0, st.opErr("write", werr)
		}
		err = hw.WriteDataHeader(st.id, n)
		s.noteData(st.id, 1)
	}
	if err == nil {
		err = s.fr.Flush()
	}
	left, spliced := n, 0
	if err == nil {
		var serr error
		werr := link.Write(func(fd uintptr) bool {
			for left > 0 {
				m, e := sockio.Splice(p.r, int(fd), left, spliceNonblock|spliceMove)
				switch {
				case e == syscall.EINTR:
					continue
				case e == syscall.EAGAIN:
					return false // the link is full: wait
				case e != nil:
					serr = os.NewSyscallError("splice", e)
					return true
				case m <= 0:
					serr = io.ErrUnexpectedEOF // the pipe held less than it should
					return true
				}
				left -= int(m)
			}
			return true
		})
		err = werr
		if err == nil {
			err = serr
		}
		spliced = n - left // after the header, which went out whole
	}
	s.wmu.Unlock()
	release(batch)
	putPipe(p, left)
	if err != nil {
		s.writeFailed(err)
		s.wake()
		return batch, spliced, st.opErr("write", s.errOr(s.linkError(err)))
	}
	s.qmu.Lock()
	more := len(s.q) > 0
	s.qmu.Unlock()
	if more {
		s.wake()
	}
	return batch, n, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

const (
	spliceMove     = 0x1 // SPLICE_F_MOVE
	spliceNonblock = 0x2 // SPLICE_F_NONBLOCK
	fSetPipeSize   = 1031
)

var errNoPipe = os.NewSyscallError("pipe2", syscall.EMFILE)

// A pipe carries one spliced frame at a time; pooled, and always empty
// in the pool.
type pipe struct{ r, w int }

var pipePool sync.Pool

// noPipes makes getPipe fail, as when the process is out of descriptors
// (tests: SetNoPipes).
var noPipes atomic.Bool

func getPipe() *pipe {
	if noPipes.Load() {
		return nil
	}
	if p, ok := pipePool.Get().(*pipe); ok {
		return p
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil
	}
	p := &pipe{r: fds[0], w: fds[1]}
	// As big as a frame, so a frame is one splice each way (the default
	// is 64 KiB; if this fails, frames are just smaller).
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.w), fSetPipeSize, spliceChunk)
	runtime.SetFinalizer(p, (*pipe).close)
	return p
}

// putPipe gives p back, or closes it if it still holds left bytes.
func putPipe(p *pipe, left int) {
	if p == nil {
		return
	}
	if left > 0 {
		runtime.SetFinalizer(p, nil)
		p.close()
		return
	}
	pipePool.Put(p)
}

func (p *pipe) close() {
	syscall.Close(p.r)
	syscall.Close(p.w)
}

const spliceRestOK = true

// spliceRest moves up to rest bytes of a split Data frame (the next bytes
// on link) to the stream's TCP destination inside the kernel: from the
// link into a pipe, waiting for the link, then from the pipe to the
// destination without waiting. What the destination has no room for
// stays in the pipe, queued for WriteTo to splice out when there is room
// (a burst that outruns the destination costs no copy through user
// space, as for a relay between two TCP connections), or, past the
// stream's and the session's bounds on pipes, is read back and buffered,
// as push does. ok is false, with nothing taken, when the stream cannot
// take bytes that way now (no TCP destination, bytes buffered in memory
// ahead of these, no pipe to be had). err is the link's.
func (st *Stream) spliceRest(link syscall.RawConn, rest int, idle *IdleReader) (n int, ok bool, err error) {
	st.mu.Lock()
	sink := st.sink
	// Queueing needs a pipe from the budget: without one, the bytes would
	// only be spliced into a pipe to be read back.
	can := st.spliceableLocked(sink) || st.queueableLocked(sink) && st.s.pipes.Used() < st.s.pipes.limit
	st.mu.Unlock()
	if !can {
		return 0, false, nil
	}
	idle.touch()
	p, got, err := spliceIn(link, min(rest, spliceChunk))
	switch {
	case err == errNoPipe:
		return 0, false, nil // nothing taken: the caller reads instead
	case err != nil:
		return 0, true, idle.silent(err)
	case got == 0:
		return 0, true, &net.OpError{Op: "read", Net: "tcp", Err: io.ErrUnexpectedEOF} // the link ended inside a frame
	}
	// Only the read loop buffers a stream's bytes, but PushTo may have
	// returned meanwhile: check again before the bytes go out.
	var sent, grant int
	st.mu.Lock()
	if st.spliceableLocked(sink) {
		var werr error
		sent, werr = spliceDrain(sink.raw, p, got)
		if sent > 0 {
			sink.delivered(sent)
			st.received(sent)
			grant = st.consumed(sent, sent == got)
		}
		if werr != nil {
			// As in deliver: WriteTo returns the error, and what still
			// arrives for the stream is dropped.
			sink.err = werr
		}
	}
	failed := sink.err != nil
	left := got - sent
	queued, overrun := false, false
	if left > 0 && !failed && st.queueableLocked(sink) && !st.wouldOverrun(left) {
		// Into the pipe at the queue's tail while it has room: each
		// splice from the link brings what the link had, often far
		// less than a pipe holds, and a pipe per piece would spend the
		// stream's pipes on a small part of the burst. (Bytes past
		// the window are never queued: the stream is cut below.)
		if m := st.appendPipeLocked(p, left); m > 0 {
			st.received(m)
			left -= m
			queued = left == 0
		}
	}
	if left > 0 && !failed && !overrun && st.queueableLocked(sink) && st.s.pipes.take(1) == 1 {
		if overrun = st.received(left); !overrun {
			st.queueRbufLocked()
			st.queue = append(st.queue, segment{p: p, n: left})
			st.queued += left
			st.npipes++
			queued = true
		} else {
			st.s.pipes.give(1)
		}
	}
	st.mu.Unlock()
	sink.countDelivered(sent)
	st.grant(grant)
	switch {
	case overrun:
		putPipe(p, left) // closed, with the bytes past the window
		st.s.cut(st, &CutError{Msg: "rtcp: the peer sent more than the flow-control window allows"})
		return got, true, nil
	case queued:
		if left == 0 {
			putPipe(p, 0) // all of it went to the tail's pipe
		}
		st.readable()
		return got, true, nil
	}
	if failed {
		st.readable()
	}
	if left > 0 {
		st.pushFromPipe(p, left)
		return got, true, nil
	}
	putPipe(p, 0)
	return got, true, nil
}

// appendPipeLocked moves up to n bytes from p into the pipe at the end of
// the stream's queue, if the queue ends with a pipe and nothing is
// buffered behind it, without waiting (a pipe moves its pages to another,
// no copy). It returns what it moved, already counted in the tail's
// segment. st.mu is held: WriteTo takes only segments it pops under it,
// so nobody else uses the tail's pipe.
func (st *Stream) appendPipeLocked(p *pipe, n int) int {
	if len(st.queue) == 0 || st.roff < len(st.rbuf) {
		return 0
	}
	t := &st.queue[len(st.queue)-1]
	if t.p == nil {
		return 0
	}
	moved := 0
	for moved < n {
		m, err := sockio.Splice(p.r, t.p.w, n-moved, spliceNonblock|spliceMove)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			break // full (EAGAIN), or it cannot: a pipe of its own
		}
		moved += int(m)
	}
	t.n += moved
	st.queued += moved
	return moved
}

// maxStreamPipes bounds the pipes one stream queues (spliceRest).
const maxStreamPipes = 16

// queueableLocked reports whether bytes for the stream that sink cannot
// take now may wait in a pipe: the stream relays to a TCP destination,
// and holds fewer than maxStreamPipes. st.mu is held.
func (st *Stream) queueableLocked(sink *pusher) bool {
	if sink == nil || st.sink != sink || sink.raw == nil || sink.err != nil ||
		st.npipes >= maxStreamPipes || st.rclosed || st.rerr != nil {
		return false
	}
	select {
	case <-st.closed:
		return false
	default:
		return true
	}
}

// readFull reads len(b) bytes from the pipe fd, which holds them.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := sockio.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m <= 0 {
			return n, io.ErrUnexpectedEOF
		}
		n += m
	}
	return n, nil
}

// spliceOutWait moves the n bytes in p to dst, waiting for room (and
// honouring dst's write deadline). It returns what it moved.
func spliceOutWait(dst syscall.RawConn, p *pipe, n int) (sent int, err error) {
	return spliceOut(dst, p, n, true)
}

// spliceableLocked reports whether the stream's next bytes may go
// straight to sink: its TCP destination, with nothing buffered ahead of
// them. st.mu is held.
func (st *Stream) spliceableLocked(sink *pusher) bool {
	if sink == nil || st.sink != sink || sink.raw == nil || sink.err != nil ||
		st.draining > 0 || st.roff < len(st.rbuf) || len(st.queue) > 0 || st.rclosed || st.rerr != nil {
		return false
	}
	select {
	case <-st.closed:
		return false
	default:
		return true
	}
}

// pushFromPipe reads the n bytes left in p and pushes them, then gives
// p back (or closes it, if it cannot be emptied).
func (st *Stream) pushFromPipe(p *pipe, n int) {
	bp := restPool.Get().(*[]byte)
	defer restPool.Put(bp)
	for n > 0 {
		m, err := sockio.Read(p.r, (*bp)[:min(n, len(*bp))])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			// Not expected of a pipe holding n bytes; the stream has
			// lost bytes, so it cannot go on. A cut, not an Abort: its
			// reader gets what came before the gap and then why, where
			// a closed stream would end a relay as cleanly as a FIN.
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			putPipe(p, n)
			st.s.cut(st, &CutError{Msg: fmt.Sprintf("rtcp: session %d on the %s cut: reading back %d spliced bytes from a pipe: %v",
				st.id, st.s.cfg.Name, n, err)})
			return
		}
		st.push((*bp)[:m])
		n -= m
	}
	putPipe(p, 0)
}

// spliceDrain moves up to n bytes from p to the socket of dst without
// waiting, and returns how many it moved.
func spliceDrain(dst syscall.RawConn, p *pipe, n int) (sent int, err error) {
	return spliceOut(dst, p, n, false)
}

// spliceOut moves up to n bytes from p to dst; when dst is full it waits
// for room if wait says so, and returns what it moved if not.
func spliceOut(dst syscall.RawConn, p *pipe, n int, wait bool) (sent int, err error) {
	var serr error
	werr := dst.Write(func(fd uintptr) bool {
		for sent < n {
			m, e := sockio.Splice(p.r, int(fd), n-sent, spliceNonblock|spliceMove)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return !wait // full: wait for room, or leave the rest
			case e != nil:
				serr = os.NewSyscallError("splice", e)
				return true
			case m <= 0:
				serr = io.ErrUnexpectedEOF
				return true
			}
			sent += int(m)
		}
		return true
	})
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		return sent, &net.OpError{Op: "write", Net: "tcp", Err: werr}
	}
	return sent, nil
}

// unsent returns the bytes written to the socket rc that its peer has not
// yet acknowledged (SIOCOUTQ), or 0 if that cannot be told.
func unsent(rc syscall.RawConn) int {
	n := 0
	rc.Control(func(fd uintptr) {
		var v int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); errno == 0 {
			n = int(v)
		}
	})
	return n
}

// A BulkSplicer moves the bursts of one direction of a relay between two
// TCP connections (internal/relay) from src to dst inside the kernel,
// through a pooled pipe taken only while bytes are in it: a splice waits
// for src without one, so a relay holds no pipe while idle, where
// io.Copy's splice holds one while it waits. It is made once per
// direction: each burst then costs its splices only.
type BulkSplicer struct {
	src, dst syscall.RawConn
	// Watch, if not nil, is called when a splice to dst must wait for
	// room, and the stop it returns when the wait ends. An error from
	// stop is src's failure, for which the watch abandoned the wait (a
	// reset, internal/relay): Splice returns it as src's.
	Watch func() (stop func() error)
}

// NewBulkSplicer returns a BulkSplicer from src to dst, or nil if their
// sockets cannot be spliced raw (not in non-blocking mode).
func NewBulkSplicer(dst, src *net.TCPConn) *BulkSplicer {
	srcRC, err1 := src.SyscallConn()
	dstRC, err2 := dst.SyscallConn()
	if err1 != nil || err2 != nil || !sockio.NonBlocking(srcRC) || !sockio.NonBlocking(dstRC) {
		return nil
	}
	return &BulkSplicer{src: srcRC, dst: dstRC}
}

// Splice splices src to dst, calling count with what each splice moved,
// until src's end (eof), an error, or a splice that brought less than 4
// KiB (bulkLeave): what comes now is small, and the caller reads it
// instead (a read and a write cost less than two splices). A burst of any
// length is spliced whole, as io.Copy would: returning in between would
// cost the caller a read and a write and a short splice each time.
// Without a pipe to be had it returns ok false, having moved nothing.
// wfail says that err came from splicing to dst, not from src.
func (b *BulkSplicer) Splice(count func(int64)) (n int64, eof, ok, wfail bool, err error) {
	for {
		p, got, err := spliceIn(b.src, spliceChunk)
		if err == errNoPipe {
			return n, false, n > 0, false, nil
		}
		if err != nil {
			return n, false, true, false, err
		}
		if got == 0 {
			return n, true, true, false, nil
		}
		sent, err, srcFailed := b.out(p, got)
		putPipe(p, got-sent)
		n += int64(sent)
		if sent > 0 {
			count(int64(sent))
		}
		if err != nil {
			return n, false, true, !srcFailed, err
		}
		if got < bulkLeave {
			return n, false, true, false, nil
		}
	}
}

// out moves the n bytes in p to dst, waiting for room, under Watch while
// it waits. srcFailed says that err is the watch's: src failed.
func (b *BulkSplicer) out(p *pipe, n int) (sent int, err error, srcFailed bool) {
	if b.Watch == nil {
		sent, err = spliceOutWait(b.dst, p, n)
		return sent, err, false
	}
	if sent, err = spliceDrain(b.dst, p, n); err != nil || sent == n {
		return sent, err, false
	}
	stop := b.Watch()
	m, err := spliceOutWait(b.dst, p, n-sent)
	sent += m
	if serr := stop(); serr != nil {
		return sent, serr, true
	}
	return sent, err, false
}

// bulkLeave: a splice that brings less than this ends a BulkSplicer's bulk
// transfer (a request or an answer, not a burst in pieces, which at a
// round trip often come in under 32 KiB).
const bulkLeave = 4 << 10
