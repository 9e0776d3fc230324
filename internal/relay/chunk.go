package relay

import (
	"net"
	"sync"
	"syscall"

	"rtcp/internal/tcpreset"
)

// A chunkReader reads a relay direction's source chunk by chunk without
// holding a buffer while the source has nothing to give, where the source
// allows it: an idle session must cost the relay little memory. The
// buffer is taken from a pool for each chunk and given back once the
// chunk is written.
//
// A TCP source (or a wrapper of one) is read through its descriptor: the
// read is tried into a pooled buffer, and if there is nothing to read the
// buffer goes back to the pool before the wait (read_unix.go). Any other
// source (a *tls.Conn, say) keeps one buffer for the whole relay, as
// io.Copy would. (An rtcp stream never gets here: it pushes its bytes
// itself, relay.go.)
type chunkReader struct {
	src net.Conn
	raw rawSource // src is TCP, on a platform with raw reads
	buf *[]byte   // the chunk being written (held throughout for other sources)
}

// chunkSize is the relay's chunk when it holds a buffer only while a
// chunk is in flight: large, because every chunk costs syscalls and, on a
// multiplexed link, a frame (256 KiB against 32 KiB: a fifth less CPU per
// byte through a yamux DP and server, two fifths with 8 connections).
// plainSize is the buffer a source that cannot wait without one keeps
// for the whole relay.
const (
	chunkSize = 256 << 10
	plainSize = 32 << 10
)

// smallSize is copyTCP's buffer for small messages, and bulkChunk what it
// copies of a burst before it looks again when it cannot splice.
const (
	smallSize = 32 << 10
	bulkChunk = 4 << 20
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallSize); return &b }}
	bufPool   = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	plainPool = sync.Pool{New: func() any { b := make([]byte, plainSize); return &b }}
)

// A rawSource reads into a buffer from pool, returning the buffer (nil if
// no bytes came) and the number of bytes, or io.EOF at the end.
type rawSource interface {
	read(pool *sync.Pool) (*[]byte, int, error)
	copySmall(pool *sync.Pool, dst syscall.RawConn, count func(int64)) smallCopy
}

// A smallCopy is what copySmall did, and what is left to its caller.
type smallCopy struct {
	n     int64   // bytes written to dst
	bp    *[]byte // the buffer of rest and of a burst's first read, for pool
	rest  []byte  // what dst did not take at once: to be written with a wait
	burst bool    // the last read filled the buffer: a bulk transfer starts
	err   error   // src's (io.EOF at its end), or dst's where wfail
	wfail bool
}

func newChunkReader(src net.Conn) *chunkReader {
	r := &chunkReader{src: src}
	if tc := tcpreset.Of(src); tc != nil {
		r.raw = newRawReader(tc)
	}
	return r
}

// read returns the next chunk of the source; it is valid until release.
func (r *chunkReader) read() ([]byte, error) {
	if r.raw != nil {
		bp, n, err := r.raw.read(&bufPool)
		r.buf = bp
		if bp == nil {
			return nil, err
		}
		return (*bp)[:n], err
	}
	if r.buf == nil {
		r.buf = plainPool.Get().(*[]byte)
	}
	n, err := r.src.Read(*r.buf)
	return (*r.buf)[:n], err
}

// release gives the last chunk's buffer back, except for a source that
// cannot wait without one.
func (r *chunkReader) release() {
	if r.buf != nil && r.raw != nil {
		bufPool.Put(r.buf)
		r.buf = nil
	}
}

// close gives back any buffer still held.
func (r *chunkReader) close() {
	if r.buf != nil {
		if r.raw != nil {
			bufPool.Put(r.buf)
		} else {
			plainPool.Put(r.buf)
		}
		r.buf = nil
	}
}
