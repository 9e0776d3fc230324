//go:build unix

package relay

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"rtcp/internal/sockio"
	"rtcp/internal/tcpreset"
)

// A resetWatch ends a copy's wait for room in dst when src is reset
// meanwhile. Between two TCP connections (copyTCP) the direction that
// waits to write dst is the only reader of src, and the other direction
// waits to read dst: without it, a server that resets its side (the TCP
// transport's data link, when it aborts its session) while the relay
// waits on a client that reads nothing would go unnoticed until the
// client read or went, and hold the relay, both connections and a pipe
// for so long. The watch runs only while a write has waited for room
// for watchAfter (start, stop): a goroutine waits for src to be
// readable, which a reset makes it, and finding src reset
// (tcpreset.WasReset) abandons the write with a write deadline in the
// past. Linux only, where a reset can be told.
//
// Once Join has half-closed src (srcFin, set before its FIN leaves), a
// src whose peer has closed too is left in the state that a reset
// leaves it in: from then on the watch takes nothing for a reset (nor
// does pipePlain's check at the end), else a client that sent its
// request, half-closed and reads the answer slowly would be cut.
type resetWatch struct {
	src, dst *net.TCPConn
	srcRC    syscall.RawConn
	dstRC    syscall.RawConn
	srcFin   *atomic.Bool

	// The watch of the wait in progress: timer starts it (run) and
	// stop ends it; running counts it from start to its end, reset
	// says that it found src reset. Made at the first wait.
	timer   *time.Timer
	stopFn  func() error
	running sync.WaitGroup
	reset   atomic.Bool
}

// watchAfter is how long a write waits for room before its watch
// starts: a wait for a reader that has stopped is long, and the waits
// of a burst to a reader that reads, short, cost no watch. (A watch at
// every wait, which a burst to a reader slower than its source has at
// almost every splice, cost 3 context switches per MB more at the DP of
// scripts/bench-burst -transport tcp -rtt 0, and some 0.08 s of CPU
// per GB on 0.25.)
const watchAfter = 200 * time.Millisecond

// newResetWatch returns a watch of src for writes to dst, or nil where
// a reset cannot be told. srcFin says that Join has half-closed src.
func newResetWatch(dst, src *net.TCPConn, srcFin *atomic.Bool) *resetWatch {
	if runtime.GOOS != "linux" {
		return nil
	}
	srcRC, err1 := src.SyscallConn()
	dstRC, err2 := dst.SyscallConn()
	if err1 != nil || err2 != nil {
		return nil
	}
	return &resetWatch{src: src, dst: dst, srcRC: srcRC, dstRC: dstRC, srcFin: srcFin}
}

// start watches src until stop, from watchAfter into the wait on: stop
// returns tcpreset.ErrReset if src was reset meanwhile (and the write to
// dst abandoned, its deadline cleared again), else nil. The watch sets
// and clears src's read deadline: the relay owns src's reads. One watch
// at a time: the copy calls stop before it starts the next.
func (w *resetWatch) start() (stop func() error) {
	w.reset.Store(false)
	w.running.Add(1)
	if w.timer == nil {
		w.timer = time.AfterFunc(watchAfter, w.run)
		w.stopFn = w.stop
	} else {
		w.timer.Reset(watchAfter)
	}
	return w.stopFn
}

// run is the watch, on the timer's goroutine: it waits for src to be
// readable, which a reset makes it, until stop ends the wait.
func (w *resetWatch) run() {
	defer w.running.Done()
	w.srcRC.Read(func(uintptr) bool {
		// srcFin looked at after asking: see tcpreset.WasReset.
		if !tcpreset.WasReset(w.src) || w.srcFin.Load() {
			return false // wait for src to be readable: bytes, an end, a reset
		}
		w.reset.Store(true)
		w.dst.SetWriteDeadline(time.Unix(1, 0))
		return true
	})
}

// stop ends the watch that start began.
func (w *resetWatch) stop() error {
	if w.timer.Stop() {
		w.running.Done() // the wait ended before the watch began
		return nil
	}
	w.src.SetReadDeadline(time.Unix(1, 0)) // ends the watch's wait
	w.running.Wait()
	w.src.SetReadDeadline(time.Time{})
	if !w.reset.Load() {
		return nil
	}
	w.dst.SetWriteDeadline(time.Time{})
	return tcpreset.ErrReset
}

// write writes p to dst with write (dst's), waiting for room under the
// watch: srcReset says that err is src's reset, which abandoned the
// wait. A nil watch writes as write does.
func (w *resetWatch) write(write func([]byte) (int, error), p []byte) (n int, err error, srcReset bool) {
	if w == nil {
		n, err = write(p)
		return n, err, false
	}
	if n, err = sockio.TryWrite(w.dstRC, p); err != nil || n == len(p) {
		return n, err, false
	}
	stop := w.start()
	m, err := write(p[n:])
	n += m
	if serr := stop(); serr != nil {
		return n, serr, true
	}
	return n, err, false
}
