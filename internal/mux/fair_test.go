package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Tests that a small frame of one stream does not wait long behind a bulk
// stream on the same link, when the link itself is what holds the bulk
// stream back.

// gateConn is a link end whose writes each wait for the test: a link
// slower than the session, paced one write at a time. A write that
// arrives says so on arrived, with its length, and waits for release;
// once open is closed, writes pass at once. passed counts the bytes that
// got through.
type gateConn struct {
	net.Conn
	arrived chan int
	release chan struct{}
	open    chan struct{}
	once    sync.Once
	passed  atomic.Int64
}

func newGateConn(c net.Conn) *gateConn {
	return &gateConn{Conn: c, arrived: make(chan int), release: make(chan struct{}), open: make(chan struct{})}
}

func (g *gateConn) Write(p []byte) (int, error) {
	select {
	case g.arrived <- len(p):
		select {
		case <-g.release:
		case <-g.open:
		}
	case <-g.open:
	}
	n, err := g.Conn.Write(p)
	g.passed.Add(int64(n))
	return n, err
}

// step lets the write that waits go, and waits for the next one.
func (g *gateConn) step() { g.release <- struct{}{}; <-g.arrived }

// openUp lets every write through from now on.
func (g *gateConn) openUp() { g.once.Do(func() { close(g.open) }) }

// startFramer is a binFramer that records where the Data frames of one
// stream (watch) start in what it produces.
type startFramer struct {
	*binFramer
	watch  atomic.Int64
	starts chan int64 // buffered
}

func (fr *startFramer) WriteFrame(f *Frame) error {
	if f.Kind == KindData && len(f.Data) > 0 && f.ID == fr.watch.Load() {
		produced, _ := fr.Counts()
		select {
		case fr.starts <- produced:
		default:
		}
	}
	return fr.binFramer.WriteFrame(f)
}

// TestSmallFrameBehindBulk: a stream writes as fast as the link takes
// it, another writes a small message now and then. Once the small
// message is queued, at most one frame of the bulk stream may go out
// before it: the one being written when it came. (A link that carries
// a bulk stream alone takes a batch of its frames in one write, which
// a message that comes in the middle of it waits for: at most one batch.)
// The same holds toward a peer without flow control, whose streams'
// Writes queue their frames for the write loop.
func TestSmallFrameBehindBulk(t *testing.T) {
	t.Run("flow control", func(t *testing.T) { smallFrameBehindBulk(t, flowConfig(8<<20)) })
	t.Run("no flow control", func(t *testing.T) { smallFrameBehindBulk(t, Config{HalfClose: true}) })
}

func smallFrameBehindBulk(t *testing.T, cfg Config) {
	const chunk = 16 << 10
	cfg.ChunkSize = chunk
	ca, cb := net.Pipe()
	gate := newGateConn(ca)
	fr := &startFramer{binFramer: newBinFramer(gate), starts: make(chan int64, 1)}
	l := &link{ca: ca, cb: cb, a: New(gate, fr, cfg), b: New(cb, newBinFramer(cb), cfg)}

	// The first writes (opens, acks) pass; then the gate holds each.
	bulkA, bulkB := openGated(t, l, gate)
	smallA, smallB := openGated(t, l, gate)
	fr.watch.Store(smallA.ID())

	var wg sync.WaitGroup
	defer func() {
		gate.openUp()
		bulkA.Close()
		smallA.Close()
		l.close()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<20)
		for {
			if _, err := bulkA.Write(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, bulkB)
	}()

	<-gate.arrived
	// The bulk stream alone, long enough to take batches.
	for gate.passed.Load() < 2<<20 {
		gate.step()
	}
	frame := int64(binHeader + chunk)
	msg := []byte("GET key:000042\r\n")
	got := make([]byte, len(msg))
	for round := range 6 {
		// A write is held at the gate: the link is busy.
		before := gate.passed.Load()
		if q := l.a.queuedBytes(); q > maxQueuedBytes/2 {
			// The small Write would wait behind them (or for room).
			t.Fatalf("round %d: %d bytes of the bulk stream are queued ahead of the small message", round, q)
		}
		if _, err := smallA.Write(msg); err != nil {
			t.Fatalf("round %d: small Write: %v", round, err)
		}
		var start int64
		for {
			gate.step()
			select {
			case start = <-fr.starts:
			default:
				continue
			}
			break
		}
		for gate.passed.Load() < start+binHeader+int64(len(msg)) {
			gate.step()
		}
		if _, err := io.ReadFull(smallB, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: read %q, %v; want %q", round, got, err, msg)
		}
		ahead := start - before
		limit := frame // the frame being written when msg came
		if round == 0 {
			limit = int64(maxBatchFrames) * frame // a batch of the bulk stream alone
		}
		t.Logf("round %d: %d bytes went out ahead of the small frame", round, ahead)
		if ahead > limit {
			t.Errorf("round %d: %d bytes of the bulk stream went out after the small message was queued, before it; want at most %d",
				round, ahead, limit)
		}
	}
}

// queuedBytes is the Data bytes waiting in the queue.
func (s *Session) queuedBytes() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.qbytes
}

// openGated opens a stream on l, whose a side writes through gate, and
// returns both ends; the gate passes every write until then.
func openGated(t *testing.T, l *link, gate *gateConn) (*Stream, *Stream) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-gate.arrived:
				gate.release <- struct{}{}
			case <-done:
				return
			}
		}
	}()
	a, b := l.open(t)
	close(done)
	return a, b
}

// TestWriteWaitingForLinkEnds: a Write of more than one frame that finds
// the link being written waits for it (it does not queue copies), and
// the link may take nothing for long: its peer stopped reading it, and
// the writer holding it is stuck. That wait ends as a net.Conn's does:
// at the stream's Close or Abort, at a write deadline set meanwhile, at
// the session's end; not when the link moves again.
func TestWriteWaitingForLinkEnds(t *testing.T) {
	for _, stop := range []string{"Close", "Abort", "deadline", "session Close"} {
		t.Run(stop, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, cb, open := rawPeerSession(t)
				holder, waiter := open(1), open(2)
				// From here the peer reads nothing: the holder's Write
				// takes the link and is stuck in it.
				held := make(chan error, 1)
				go func() {
					_, err := holder.Write(make([]byte, 1<<20))
					held <- err
				}()
				synctest.Wait()
				wrote := make(chan error, 1)
				go func() {
					_, err := waiter.Write(make([]byte, 2*(16<<10))) // two frames
					wrote <- err
				}()
				synctest.Wait()
				select {
				case err := <-wrote:
					t.Fatalf("the second Write returned %v while the link was held", err)
				default:
				}

				closed := stopWrite(t, stop, s, waiter, wrote, "for the link")
				cb.Close() // the link fails: the holder returns
				<-held
				if stop == "session Close" {
					<-closed
				}
				s.Close()
				<-wrote
			})
		})
	}
}

// TestQueuedWriteWaitingForItsFrameEnds: toward a peer without flow
// control, a stream that shares the link queues its next frame only once
// its last one is written; the peer may have stopped reading the link
// meanwhile, and that wait ends as the wait for room in the queue does:
// at the stream's Close or Abort, at its write deadline, at the
// session's end.
func TestQueuedWriteWaitingForItsFrameEnds(t *testing.T) {
	for _, stop := range []string{"Close", "Abort", "deadline", "session Close"} {
		t.Run(stop, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, cb, open := rawPeerSessionWith(t, Config{HalfClose: true})
				defer s.Close()
				defer cb.Close() // the link fails: the write loop returns
				bulk, small := open(1), open(2)
				peer := newJSONFramer(cb)
				// Another stream's Data went out last: the link is shared.
				if _, err := small.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if f, err := peer.ReadFrame(); err != nil || f.Kind != KindData || f.ID != 2 {
					t.Fatalf("peer read %+v, %v; want stream 2's Data", f, err)
				}
				// From here the peer reads nothing: the write loop is
				// stuck in the bulk stream's first frame, and its Write
				// waits to queue the second.
				wrote := make(chan error, 1)
				go func() {
					_, err := bulk.Write(make([]byte, 2*(16<<10)))
					wrote <- err
				}()
				synctest.Wait()
				select {
				case err := <-wrote:
					t.Fatalf("the Write returned %v while its first frame was being written", err)
				default:
				}
				if q := s.queuedBytes(); q != 0 {
					t.Fatalf("%d bytes queued behind the frame being written, want none", q)
				}

				closed := stopWrite(t, stop, s, bulk, wrote, "for its frame")
				cb.Close()
				if stop == "session Close" {
					<-closed
				}
			})
		})
	}
}

// stopWrite ends a Write of st that waits (for what: the message's
// words), whose error comes on wrote, by stop: the stream's Close or
// Abort, a write deadline, or the session's Close (which closes the
// channel returned once it has returned). It checks that the Write
// returned at once, with the error a net.Conn's Write returns, and puts
// that error back on wrote.
func stopWrite(t *testing.T, stop string, s *Session, st *Stream, wrote chan error, what string) (closed chan struct{}) {
	t.Helper()
	start := time.Now()
	closed = make(chan struct{})
	want := net.ErrClosed
	switch stop {
	case "Close":
		st.Close()
	case "Abort":
		st.Abort(errors.New("test: aborted"))
	case "deadline":
		st.SetWriteDeadline(time.Now().Add(time.Second))
		want = os.ErrDeadlineExceeded
	case "session Close":
		go func() { s.Close(); close(closed) }()
	}
	if stop == "deadline" {
		time.Sleep(time.Second)
	}
	synctest.Wait()
	select {
	case err := <-wrote:
		wrote <- err
		if !errors.Is(err, want) && stop != "session Close" {
			t.Errorf("the waiting Write returned %v, want %v", err, want)
		}
		if err == nil {
			t.Error("the waiting Write returned no error")
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the waiting Write returned %v after its %s", d, stop)
		}
	default:
		t.Errorf("the Write waiting %s is still blocked after its %s", what, stop)
	}
	return closed
}

// rawPeerSession is a flow-controlled session on a net.Pipe whose peer is
// the test: open opens a stream and acknowledges it with id; from then on
// the peer reads the link only as the test does (cb).
func rawPeerSession(t *testing.T) (s *Session, cb net.Conn, open func(id int64) *Stream) {
	return rawPeerSessionWith(t, flowConfig(64<<10))
}

// rawPeerSessionWith is rawPeerSession with cfg.
func rawPeerSessionWith(t *testing.T, cfg Config) (s *Session, cb net.Conn, open func(id int64) *Stream) {
	ca, cb := net.Pipe()
	s = New(ca, newJSONFramer(ca), cfg)
	peer := newJSONFramer(cb)
	open = func(id int64) *Stream {
		t.Helper()
		opened := make(chan *Stream, 1)
		go func() {
			st, _ := s.Open(context.Background(), "", "")
			opened <- st
		}()
		if f, err := peer.ReadFrame(); err != nil || f.Kind != KindOpen {
			t.Fatalf("peer read %+v, %v; want an Open", f, err)
		}
		peer.WriteFrame(&Frame{Kind: KindAck, ID: id})
		peer.Flush()
		st := <-opened
		if st == nil {
			t.Fatal("Open failed")
		}
		return st
	}
	return s, cb, open
}

// TestWriteEndedByQueuedEnd: a direct write that writes the queued frames
// first and finds among them its own stream's end (CloseWrite here) stops
// there; it gives the batch's list back while it still holds the link,
// for the next writer to take the link writes the queue with that list
// (run with -race). Before, it did so after letting the link go, and the
// next writer could take the list the queue was using.
func TestWriteEndedByQueuedEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, cb, open := rawPeerSession(t)
		x, y, z := open(1), open(2), open(3)

		s.wmu.Lock() // another writer has the link
		xw := make(chan error, 1)
		go func() {
			_, err := x.Write(make([]byte, 2*(16<<10))) // two frames: waits for the link
			xw <- err
		}()
		synctest.Wait()
		yw := make(chan error, 1)
		go func() {
			_, err := y.Write(make([]byte, 2*(16<<10))) // waits after x
			yw <- err
		}()
		synctest.Wait()
		x.CloseWrite() // queued: x's Write finds it when it has the link
		synctest.Wait()
		s.wmu.Unlock() // x takes the link and writes the queue; the peer reads nothing yet
		synctest.Wait()
		if _, err := z.Write([]byte("small")); err != nil { // queued: y writes it
			t.Fatalf("small Write: %v", err)
		}
		synctest.Wait()
		read := make(chan struct{})
		go func() {
			io.Copy(io.Discard, cb)
			close(read)
		}()
		if err := <-xw; !errors.Is(err, ErrWriteClosed) {
			t.Errorf("the Write whose stream was closed for writing meanwhile returned %v, want ErrWriteClosed", err)
		}
		if err := <-yw; err != nil {
			t.Errorf("the other Write returned %v", err)
		}
		x.Close()
		y.Close()
		z.Close()
		s.Close()
		cb.Close()
		<-read
	})
}

// TestSoloRunDoesNotWrap: the count of a stream's Data frames in a row
// (noteData) stops at what shared asks, instead of growing with every
// frame of a long transfer: where int has 32 bits it wrapped below zero
// after 2^31 frames (4 TiB at Plan5's legacy 2 KiB frames), and the stream
// that had the link to itself was taken to share it again.
func TestSoloRunDoesNotWrap(t *testing.T) {
	s := &Session{lastData: -1}
	s.noteData(1, 1)
	s.noteData(2, 1) // stream 2 after stream 1: shared for a while
	if !s.shared(2) {
		t.Fatal("stream 2 does not share the link right after stream 1's frame")
	}
	for range 3 {
		s.noteData(2, math.MaxInt/2)
		if s.shared(2) || s.dataOwner.Load() != 2 {
			t.Fatalf("after %d frames of stream 2 in a row: shared %v, owner %d; want it alone", s.soloFrames, s.shared(2), s.dataOwner.Load())
		}
	}
}
