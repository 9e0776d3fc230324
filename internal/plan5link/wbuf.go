package plan5link

import (
	"sync"

	"rtcp/protocol/plan5"
)

// A Framer encodes its messages straight into a write buffer and writes
// it with one system call when it is full or flushed. The buffer comes
// from a pool when the first message goes in and goes back at Flush: an
// idle link holds none. Small messages take a small buffer; a write of
// many Data frames at once (a stream's Write of a relay's whole read)
// takes a large one, so that they leave in one write, not one each: on
// loopback a write of 64 KiB costs the writer and its reader about half
// as much again per byte as one of 320 KiB.
const (
	smallWbuf = 16 << 10
	largeWbuf = 384<<10 + plan5.DefaultMaxLine + 64
)

var (
	smallWbufs = sync.Pool{New: func() any { b := make([]byte, 0, smallWbuf); return &b }}
	largeWbufs = sync.Pool{New: func() any { b := make([]byte, 0, largeWbuf); return &b }}
)

func putWbuf(b *[]byte) {
	*b = (*b)[:0]
	switch cap(*b) {
	case smallWbuf:
		smallWbufs.Put(b)
	case largeWbuf:
		largeWbufs.Put(b)
	}
	// Grown past both (a peer's MaxLine far above rtcp's): left to the
	// collector.
}

// room makes room in the write buffer for a message of at most need
// bytes. It takes a buffer if there is none, a large one in place of a
// small one that is too short, and writes out what the buffer holds when
// the message would not fit even in a large one. A message longer than
// the large buffer grows it (and the grown buffer is not pooled).
func (fr *Framer) room(need int) error {
	if fr.wb == nil {
		if need <= smallWbuf {
			fr.wb = smallWbufs.Get().(*[]byte)
		} else {
			fr.wb = largeWbufs.Get().(*[]byte)
		}
		return nil
	}
	n := len(*fr.wb)
	if n+need <= cap(*fr.wb) {
		return nil
	}
	if n+need > max(cap(*fr.wb), largeWbuf) {
		if err := fr.writeOut(); err != nil {
			return err
		}
		n = 0
	}
	if cap(*fr.wb) < largeWbuf && n+need <= largeWbuf {
		nb := largeWbufs.Get().(*[]byte)
		*nb = append(*nb, *fr.wb...)
		putWbuf(fr.wb)
		fr.wb = nb
	}
	return nil
}

// writeOut writes what the write buffer holds, keeping the buffer.
func (fr *Framer) writeOut() error {
	if fr.wb == nil || len(*fr.wb) == 0 {
		return nil
	}
	n, err := fr.w.Write(*fr.wb)
	fr.written += int64(n)
	*fr.wb = (*fr.wb)[:0]
	return err
}
