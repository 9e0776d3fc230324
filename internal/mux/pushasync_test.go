package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of Stream.PushAsync's parking: with nothing to do it holds no
// goroutine, and each thing that gives it work again restarts it.

// asyncPush is a PushAsync under test: its result, and a signal at each
// park.
type asyncPush struct {
	pushed <-chan pushResult
	parks  chan struct{} // cap 1: the push parked since the last receive
	nparks atomic.Int64
	count  pushCounter
}

// startAsync starts st's PushAsync to w.
func startAsync(st *Stream, w io.Writer) *asyncPush {
	pushed := make(chan pushResult, 1)
	a := &asyncPush{pushed: pushed, parks: make(chan struct{}, 1)}
	st.pushAsync(w, a.count.count, func(n int64, err error) { pushed <- pushResult{n, err} },
		func() { a.nparks.Add(1); signal(a.parks) })
	return a
}

// parkedNow reports whether st's PushAsync is parked: no goroutine runs it.
func parkedNow(st *Stream) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sink != nil && st.sink.parked
}

// waitParked waits until st's PushAsync has parked.
func (a *asyncPush) waitParked(t *testing.T, st *Stream) {
	t.Helper()
	for !parkedNow(st) {
		recvOrHang(t, a.parks, "PushAsync's park")
	}
}

// TestPushAsyncRestarts: a PushAsync started on an idle stream parks at
// once, and every event that needs its goroutine starts one again: bytes
// that the destination has no room for, the peer's end or abort, Close,
// Abort, the link's loss, a read deadline.
func TestPushAsyncRestarts(t *testing.T) {
	const some = 1000
	for _, tc := range []struct {
		name string
		// after the park: the event, and the check of the push's result
		event func(x, y *Stream, l *link)
		check func(r pushResult) string
	}{
		{"FIN", func(x, y *Stream, l *link) { x.CloseWrite() }, func(r pushResult) string {
			if r.err != nil || r.n != some {
				return "want all bytes, nil"
			}
			return ""
		}},
		{"peer Close", func(x, y *Stream, l *link) { x.Close() }, func(r pushResult) string {
			if r.err != nil || r.n != some {
				return "want all bytes, nil"
			}
			return ""
		}},
		{"peer Abort", func(x, y *Stream, l *link) { x.Abort(errors.New("disk on fire")) }, func(r pushResult) string {
			var ae *AbortError
			if !errors.As(r.err, &ae) || ae.Reason != "disk on fire" {
				return "want the peer's AbortError"
			}
			return ""
		}},
		{"Close", func(x, y *Stream, l *link) { y.Close() }, func(r pushResult) string {
			if !errors.Is(r.err, net.ErrClosed) {
				return "want net.ErrClosed"
			}
			return ""
		}},
		{"Abort", func(x, y *Stream, l *link) { y.Abort(errors.New("quota")) }, func(r pushResult) string {
			if !errors.Is(r.err, net.ErrClosed) {
				return "want net.ErrClosed"
			}
			return ""
		}},
		{"link loss", func(x, y *Stream, l *link) { l.ca.Close() }, func(r pushResult) string {
			if r.err == nil || !strings.Contains(r.err.Error(), "lost") {
				return "want a lost-link error"
			}
			return ""
		}},
		{"past read deadline", func(x, y *Stream, l *link) { y.SetReadDeadline(time.Unix(1, 0)) }, func(r pushResult) string {
			if !errors.Is(r.err, errTimeout) {
				return "want the deadline's error"
			}
			return ""
		}},
		{"read deadline", func(x, y *Stream, l *link) { y.SetDeadline(time.Now().Add(20 * time.Millisecond)) }, func(r pushResult) string {
			if !errors.Is(r.err, errTimeout) {
				return "want the deadline's error"
			}
			return ""
		}},
		{"read deadline cleared, then FIN", func(x, y *Stream, l *link) {
			y.SetReadDeadline(time.Now().Add(time.Hour))
			y.SetReadDeadline(time.Time{})
			x.CloseWrite()
		}, func(r pushResult) string {
			if r.err != nil || r.n != some {
				return "want all bytes, nil"
			}
			return ""
		}},
	} {
		for _, dest := range []string{"tcp", "writer"} {
			t.Run(tc.name+"/"+dest, func(t *testing.T) {
				l := tcpLink(t, flowConfig(64<<10))
				defer l.close()
				x, y := l.open(t)
				defer x.Close()
				defer y.Close()

				var (
					a        *asyncPush
					w        io.Writer
					received func(n int) []byte
				)
				switch dest {
				case "tcp":
					dst, far := slowTCPDest(t)
					w = dst
					received = func(n int) []byte {
						b := make([]byte, n)
						if _, err := io.ReadFull(far, b); err != nil {
							t.Fatalf("the destination's peer: %v", err)
						}
						return b
					}
				case "writer":
					var lb lockedBuffer
					w = &lb
					received = func(n int) []byte {
						// A writer that is no socket is written by
						// the push's goroutine: started, then
						// parked again.
						for len(lb.bytes()) < n {
							recvOrHang(t, a.parks, "PushAsync's park after a write")
						}
						return lb.bytes()
					}
				}
				a = startAsync(y, w)
				if !parkedNow(y) {
					t.Fatal("PushAsync on an idle stream did not park at once")
				}
				<-a.parks
				data := randomBytes(9, some)
				if _, err := x.Write(data); err != nil {
					t.Fatal(err)
				}
				if got := received(some); !bytes.Equal(got, data) {
					t.Fatalf("the destination got %d bytes that are not the %d written", len(got), some)
				}
				a.waitParked(t, y)
				tc.event(x, y, l)
				r := recvOrHang(t, a.pushed, "PushAsync's end")
				if msg := tc.check(r); msg != "" {
					t.Fatalf("PushAsync ended with %d, %v: %s", r.n, r.err, msg)
				}
				if a.count.sum.Load() != r.n || a.count.bad.Load() != 0 {
					t.Errorf("count summed %d (%d not positive), the push reported %d", a.count.sum.Load(), a.count.bad.Load(), r.n)
				}
				y.mu.Lock()
				sink, dsink := y.sink, y.destSink
				y.mu.Unlock()
				if sink != nil || dsink != nil {
					t.Error("the stream still holds its sink after PushAsync ended")
				}
			})
		}
	}
}

// TestPushAsyncFullSocketAfterPark: bytes that arrive for a parked
// PushAsync whose TCP destination is full (its peer reads nothing yet)
// restart it; it writes them in order as the peer reads, parks again when
// all are out, and the peer's end after that ends it.
func TestPushAsyncFullSocketAfterPark(t *testing.T) {
	const total = 4 << 20
	l := tcpLink(t, flowConfig(256<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()
	dst, far := slowTCPDest(t)
	a := startAsync(y, dst)
	if !parkedNow(y) {
		t.Fatal("PushAsync on an idle stream did not park at once")
	}
	data := randomBytes(10, total)
	wrote := make(chan error, 1)
	go func() { wrote <- writeRandomSizes(x, data, 10) }()
	// The peer reads nothing until the restarted goroutine writes what the
	// full socket did not take.
	recvOrHang(t, dst.firstWrite, "the restarted push's first Write")
	got := make([]byte, total)
	if _, err := io.ReadFull(far, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the destination's peer read %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := recvOrHang(t, wrote, "writing the stream"); err != nil {
		t.Fatal(err)
	}
	a.waitParked(t, y)
	select {
	case r := <-a.pushed:
		t.Fatalf("PushAsync ended with %d, %v before the stream did", r.n, r.err)
	default:
	}
	x.CloseWrite()
	if r := recvOrHang(t, a.pushed, "PushAsync's end"); r.err != nil || r.n != total {
		t.Fatalf("PushAsync ended with %d, %v; want %d, nil", r.n, r.err, total)
	}
	t.Logf("%d bytes written by the read loop, %d by PushAsync's goroutine in %d Writes; %d parks",
		total-dst.drained.Load(), dst.drained.Load(), dst.writes.Load(), a.nparks.Load())
	if c := a.count.sum.Load(); c != total {
		t.Errorf("count summed %d, want %d", c, total)
	}
}

// TestPushAsyncParksAfterDeadlineCleared: a read deadline keeps
// PushAsync's goroutine waiting for it; once the deadline is cleared the
// goroutine parks, and the push goes on.
func TestPushAsyncParksAfterDeadlineCleared(t *testing.T) {
	l := tcpLink(t, flowConfig(64<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()
	dst, far := slowTCPDest(t)
	a := startAsync(y, dst)
	<-a.parks
	y.SetReadDeadline(time.Now().Add(time.Hour))
	if parkedNow(y) {
		t.Fatal("PushAsync stayed parked with a read deadline to wait for")
	}
	y.SetReadDeadline(time.Time{})
	a.waitParked(t, y)
	if _, err := x.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(far, b); err != nil || string(b) != "after" {
		t.Fatalf("the destination's peer read %q, %v; want \"after\"", b, err)
	}
	x.CloseWrite()
	if r := recvOrHang(t, a.pushed, "PushAsync's end"); r.err != nil || r.n != 5 {
		t.Fatalf("PushAsync ended with %d, %v; want 5, nil", r.n, r.err)
	}
}

// TestPushAsyncEndsOnRefusal: a PushAsync parked on a stream that is
// still to be answered (ManualAck) ends when Ack refuses the stream,
// which closes it; a Close after that closes nothing more, so the
// refusal itself must restart the push.
func TestPushAsyncEndsOnRefusal(t *testing.T) {
	l := newLink(t, Config{}, Config{ManualAck: true})
	defer l.close()
	accepted := make(chan *Stream, 1)
	go func() {
		st, _ := l.b.Accept()
		accepted <- st
	}()
	opened := make(chan error, 1)
	go func() {
		_, err := l.a.Open(context.Background(), "", "")
		opened <- err
	}()
	y := recvOrHang(t, accepted, "Accept")
	if y == nil {
		t.Fatal("Accept failed")
	}
	var lb lockedBuffer
	a := startAsync(y, &lb)
	if !parkedNow(y) {
		t.Fatal("PushAsync on an idle stream did not park at once")
	}
	y.Ack(errors.New("no printer called that"))
	if err := recvOrHang(t, opened, "the refused Open"); err == nil {
		t.Error("Open of the refused stream succeeded")
	}
	y.Close()
	r := recvOrHang(t, a.pushed, "PushAsync's end after the refusal")
	if !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("PushAsync ended with %v, want net.ErrClosed", r.err)
	}
}

// onlyWriter is a writer that fails the test if two Writes overlap: two
// goroutines of one PushAsync at once would reorder or repeat bytes.
type onlyWriter struct {
	t       *testing.T
	writing atomic.Bool
	buf     lockedBuffer
}

func (w *onlyWriter) Write(p []byte) (int, error) {
	if !w.writing.CompareAndSwap(false, true) {
		w.t.Error("two Writes of one PushAsync at once")
	}
	defer w.writing.Store(false)
	return w.buf.Write(p)
}

// TestPushAsyncOneGoroutineAtATime: restarts from every side at once
// (bytes arriving, read deadlines set and cleared) never run two of a
// PushAsync's goroutines together: the destination gets each byte once,
// in order, and the count adds up to what the push reports.
func TestPushAsyncOneGoroutineAtATime(t *testing.T) {
	const total = 1 << 20
	l := tcpLink(t, flowConfig(64<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()
	w := &onlyWriter{t: t}
	a := startAsync(y, w)
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		far := time.Now().Add(time.Hour)
		for {
			select {
			case <-stop:
				return
			default:
			}
			y.SetReadDeadline(far)
			y.SetReadDeadline(time.Time{})
		}
	}()
	data := randomBytes(7, total)
	wrote := make(chan error, 1)
	go func() {
		for off := 0; off < total; off += 1000 {
			if _, err := x.Write(data[off:min(off+1000, total)]); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- x.CloseWrite()
	}()
	if err := recvOrHang(t, wrote, "the writes"); err != nil {
		t.Fatal(err)
	}
	r := recvOrHang(t, a.pushed, "PushAsync's end")
	close(stop)
	<-toggled
	if r.err != nil || r.n != total {
		t.Fatalf("PushAsync ended with %d, %v; want %d, nil", r.n, r.err, total)
	}
	if !bytes.Equal(w.buf.bytes(), data) {
		t.Fatal("the destination's bytes are not those written, in order")
	}
	if a.count.sum.Load() != r.n || a.count.bad.Load() != 0 {
		t.Errorf("count summed %d (%d not positive), the push reported %d", a.count.sum.Load(), a.count.bad.Load(), r.n)
	}
}
