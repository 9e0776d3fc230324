package mux

import (
	"syscall"
	"testing"

	"rtcp/internal/flowtest"
)

// TestOverrunIntoTailPipeDropped: a split frame that overruns the
// stream's window is dropped, as push and spliceRest's new-pipe path drop
// one; appendPipeLocked must not first move it into the queue's tail
// pipe, from where WriteTo would still deliver it before the cut's error.
func TestOverrunIntoTailPipeDropped(t *testing.T) {
	l := newLink(t, flowConfig(64<<10), flowConfig(64<<10))
	defer l.close()
	out, in := l.open(t)
	defer out.Close()
	defer in.Close()
	dst, dstPeer := flowtest.TCPPair(t) // nothing reads dstPeer
	defer dst.Close()
	defer dstPeer.Close()
	rc, err := dst.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	linkA, linkB := flowtest.TCPPair(t)
	defer linkA.Close()
	defer linkB.Close()
	if _, err := linkA.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	lrc, err := linkB.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	tail := getPipe()
	if tail == nil {
		t.Skip("no pipe to be had")
	}
	if _, err := syscall.Write(tail.w, []byte("queued")); err != nil {
		t.Fatal(err)
	}
	in.s.pipes.take(1)
	in.mu.Lock()
	in.sink = &pusher{w: dst, raw: rc}
	in.queue = append(in.queue, segment{p: tail, n: 6})
	in.queued += 6
	in.npipes++
	in.avail = 100 // the peer may send 100 more bytes; it sends 1000
	in.mu.Unlock()
	got, ok, err := in.spliceRest(lrc, 1000, nil)
	in.mu.Lock()
	queued, rerr := in.queued, in.rerr
	in.mu.Unlock()
	t.Logf("spliceRest took %d, %v, %v; queued %d; rerr %v", got, ok, err, queued, rerr)
	if rerr == nil {
		t.Fatal("the overrun did not cut the stream")
	}
	if queued != 6 {
		t.Errorf("after an overrun of %d bytes the queue holds %d bytes, want the 6 from before: the overrunning frame's bytes will be delivered", got, queued)
	}
}
