package mux

import "fmt"

// A stream relayed to a TCP socket (WriteTo) whose socket is full keeps
// what arrives for it in a queue, ahead of rbuf: the pipes the bytes were
// spliced into from the link (splice_linux.go), and the buffers rbuf
// filled (push). WriteTo writes the queue in order, then rbuf. Neither
// kind of segment is copied again: a burst that outruns the destination
// costs no more than one that does not, where one growing buffer cost a
// copy per doubling and a pipe read back a copy more.

// A segment is n bytes of the queue: in pipe p, or data, a part of the
// pooled buffer buf.
type segment struct {
	p    *pipe
	buf  []byte
	data []byte
	n    int
}

// queueingLocked reports whether bytes buffered for the stream wait for
// a TCP destination (WriteTo), where a full buffer may join the queue.
// st.mu is held.
func (st *Stream) queueingLocked() bool {
	return st.sink != nil && st.sink.raw != nil
}

// queueRbufLocked moves rbuf's bytes, if any, to the end of the queue, so
// that what arrives next may follow them in a pipe or a new buffer.
// st.mu is held.
func (st *Stream) queueRbufLocked() {
	if st.roff == len(st.rbuf) {
		return
	}
	data := st.rbuf[st.roff:]
	st.queue = append(st.queue, segment{buf: st.rbuf, data: data, n: len(data)})
	st.queued += len(data)
	st.rbuf, st.roff = nil, 0
}

// popLocked takes the queue's first segment. A pipe stays counted in the
// session's budget until the caller gives it back (done). st.mu is held.
func (st *Stream) popLocked() segment {
	q := st.queue[0]
	st.queue[0] = segment{}
	st.queue = st.queue[1:]
	if len(st.queue) == 0 {
		st.queue = nil
	}
	st.queued -= q.n
	if q.p != nil {
		st.npipes--
	}
	return q
}

// done gives back what segment q held, n of its bytes still in it.
func (st *Stream) done(q segment, n int) {
	if q.p != nil {
		putPipe(q.p, n)
		st.s.pipes.give(1)
		return
	}
	putRbuf(q.buf)
}

// unqueueLocked moves the queue's bytes into rbuf, ahead of what rbuf
// holds: WriteTo has returned, and Read takes them from there. st.mu is
// held. If a pipe does not give its bytes back, the stream has lost them:
// Read gets what came before the gap, then the error unqueueLocked
// returns, with which the caller cuts the stream once st.mu is released
// (Session.cutAside), so that its peer learns of the loss too.
func (st *Stream) unqueueLocked() error {
	if len(st.queue) == 0 {
		return nil
	}
	b := getRbuf(st.queued + len(st.rbuf) - st.roff)
	for len(st.queue) > 0 {
		q := st.popLocked()
		k := len(b)
		if q.p == nil {
			b = append(b, q.data...)
			st.done(q, 0)
			continue
		}
		b = b[:k+q.n]
		m, err := readFull(q.p.r, b[k:])
		st.done(q, q.n-m)
		if err != nil {
			// A pipe that holds bytes gives them: the stream lost some,
			// so it cannot go on, and what follows the gap is dropped.
			cut := &CutError{Msg: fmt.Sprintf("rtcp: session %d on the %s cut: reading back %d spliced bytes from a pipe: %v",
				st.id, st.s.cfg.Name, q.n, err)}
			if st.rerr == nil {
				st.rerr = cut
			}
			st.releaseQueueLocked()
			putRbuf(st.rbuf)
			st.rbuf, st.roff = b[:k+m], 0
			return cut
		}
	}
	b = append(b, st.rbuf[st.roff:]...)
	putRbuf(st.rbuf)
	st.rbuf, st.roff = b, 0
	return nil
}

// releaseQueueLocked drops the queue: the stream is closed. st.mu is
// held.
func (st *Stream) releaseQueueLocked() {
	for len(st.queue) > 0 {
		q := st.popLocked()
		st.done(q, q.n)
	}
}
