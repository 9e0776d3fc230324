package mux

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"rtcp/internal/flowtest"
)

// Tests of what a Write reports when the write to the link that carried
// its frame fails: a frame that went out counts as written (writeData,
// sent).

// hookFramer is a binFramer that runs its hook, once, when it is given a
// Data frame: the session's writer holds the link (wmu) then, so a Write
// of another stream made by the hook queues its frame, for the writer to
// write with its own (combine).
type hookFramer struct {
	*binFramer
	hook atomic.Pointer[func()]
}

func (fr *hookFramer) WriteFrame(f *Frame) error {
	if f.Kind == KindData && len(f.Data) > 0 {
		if h := fr.hook.Swap(nil); h != nil {
			(*h)()
		}
	}
	return fr.binFramer.WriteFrame(f)
}

// TestWriteCountsFrameThatWentOut writes one frame of stream x directly
// while streams y and z queue theirs, so that all three leave in one
// write to the link, and cuts that write after k bytes. x's Write must
// return exactly the bytes its peer reads: its whole frame, with no error,
// if the frame is inside the k bytes (the error then comes with the next
// Write), none otherwise. y's and z's Writes returned when their frames
// were queued; their peers read no more than those Writes reported. A
// Write of several frames cut in its second reports the first.
func TestWriteCountsFrameThatWentOut(t *testing.T) {
	const hdr = binHeader // a Data frame's encoding: header, then the bytes
	sizes := map[string]int{"x": 5000, "y": 3000, "z": 2000}
	xEnd := hdr + sizes["x"]
	yEnd := xEnd + hdr + sizes["y"]
	all := yEnd + hdr + sizes["z"]
	chunk := 16 << 10 // the default ChunkSize: a 40 KiB Write is three frames
	for _, tc := range []struct {
		name  string
		k     int  // bytes the link takes
		big   bool // x writes 40 KiB alone instead
		wantX int  // what x's Write returns, and x's peer reads
	}{
		{"nothing", 0, false, 0},
		{"part of x's header", hdr / 2, false, 0},
		{"all of x but its last byte", xEnd - 1, false, 0},
		{"exactly x", xEnd, false, sizes["x"]},
		{"x and part of y", xEnd + hdr + 100, false, sizes["x"]},
		{"x and y", yEnd, false, sizes["x"]},
		{"all but the last byte", all - 1, false, sizes["x"]},
		{"all", all, false, sizes["x"]},
		{"one frame of three and part of the second", hdr + chunk + 1000, true, chunk},
		{"two frames of three", 2 * (hdr + chunk), true, 2 * chunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := net.Pipe()
			cc := &flowtest.CutConn{Conn: ca}
			fr := &hookFramer{binFramer: newBinFramer(cc)}
			cfg := flowConfig(1 << 20)
			l := &link{a: New(cc, fr, cfg), b: New(cb, newBinFramer(cb), cfg), ca: cc, cb: cb}
			defer l.close()
			from := map[string]*Stream{}
			at := map[string]*Stream{}
			for _, name := range []string{"x", "y", "z"} {
				from[name], at[name] = l.open(t)
			}
			read := map[string]chan int64{}
			for name, st := range at {
				read[name] = make(chan int64, 1)
				go func() {
					n, _ := io.Copy(io.Discard, struct{ io.Reader }{st})
					read[name] <- n
				}()
			}

			type result struct {
				n   int
				err error
			}
			wrote := map[string]result{}
			xData := make([]byte, sizes["x"])
			if tc.big {
				xData = make([]byte, 40<<10)
			} else {
				var mu sync.Mutex // guards wrote while the hook runs
				hook := func() {
					var wg sync.WaitGroup
					for _, name := range []string{"y", "z"} {
						wg.Go(func() {
							n, err := from[name].Write(make([]byte, sizes[name]))
							mu.Lock()
							wrote[name] = result{n, err}
							mu.Unlock()
						})
					}
					wg.Wait()
				}
				fr.hook.Store(&hook)
			}
			// The write loop may still hold the link after writing the last
			// Open, and x must find it idle to write its frame itself: wait
			// until the loop has let go (it has nothing more to write).
			l.a.wmu.Lock()
			l.a.wmu.Unlock()
			cc.Arm(tc.k)
			n, err := from["x"].Write(xData)
			wrote["x"] = result{n, err}

			if n != tc.wantX {
				t.Errorf("x's Write returned %d, %v; want %d", n, err, tc.wantX)
			}
			if (err == nil) != (tc.wantX == len(xData)) {
				t.Errorf("x's Write returned %d, %v; want an error only if it wrote less than all %d bytes", n, err, len(xData))
			}
			if err == nil {
				// The write that carried x's frame failed, or a later one
				// does. A Write that finds the link busy (the write loop
				// flushing what y and z queued) queues its frame and
				// returns, as into a TCP send buffer; the loop then meets
				// the cut and ends the session, and from there a Write
				// fails, having written nothing. What the queued Write
				// reported never reaches x's peer (checked below).
				if _, err := from["x"].Write([]byte("more")); err == nil {
					waitOrHang(t, l.a.Done(), "the session's end after the cut")
				}
				if n, err := from["x"].Write([]byte("more")); n != 0 || err == nil {
					t.Errorf("x's Write after the link was cut returned %d, %v; want 0 and an error", n, err)
				}
			}
			for _, name := range []string{"x", "y", "z"} {
				got := <-read[name]
				w := wrote[name]
				switch {
				case name == "x" && got != int64(w.n):
					t.Errorf("x's peer read %d bytes; its Write reported %d", got, w.n)
				case got > int64(w.n):
					t.Errorf("%s's peer read %d bytes, more than the %d its Write reported", name, got, w.n)
				}
				if name != "x" && !tc.big && (w.n != sizes[name] || w.err != nil) {
					t.Errorf("%s's Write, which queued its frame, returned %d, %v; want %d, nil", name, w.n, w.err, sizes[name])
				}
			}
			if t.Failed() {
				t.Logf("the link took %d of %d bytes", tc.k, all)
			}
		})
	}
}
