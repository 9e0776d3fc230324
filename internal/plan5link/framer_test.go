package plan5link

import (
	"bytes"
	"io"
	"testing"

	"rtcp/internal/mux"
	"rtcp/protocol/plan5"
)

// loopReader returns its bytes over and over: an endless connection.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// TestFramerData: Data frames, with and without credit, written by one
// Framer read back by another as they were.
func TestFramerData(t *testing.T) {
	var wire bytes.Buffer
	w := NewFramer(plan5.NewReader(&wire, 0), &wire)
	frames := []mux.Frame{
		{Kind: mux.KindData, ID: 1, Data: []byte("hello")},
		{Kind: mux.KindData, ID: 2, Credit: 4096},
		{Kind: mux.KindData, ID: 3, Data: bytes.Repeat([]byte{0xfe}, 1000), Credit: 7},
		{Kind: mux.KindData, ID: 4, Data: []byte{}},
	}
	for i := range frames {
		if err := w.WriteFrame(&frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewFramer(plan5.NewReader(&wire, 0), io.Discard)
	for _, want := range frames {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != want.Kind || got.ID != want.ID || got.Credit != want.Credit || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("read %+v, wrote %+v", got, want)
		}
	}
}

func BenchmarkFramerWriteData(b *testing.B) {
	n := plan5.ChunkSize(plan5.DefaultMaxLine)
	fr := NewFramer(plan5.NewReader(bytes.NewReader(nil), 0), io.Discard)
	f := &mux.Frame{Kind: mux.KindData, ID: 7, Data: make([]byte, n)}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		if err := fr.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
		if err := fr.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFramerReadData(b *testing.B) {
	n := plan5.ChunkSize(plan5.DefaultMaxLine)
	wire := plan5.AppendMessage(nil, &plan5.Data{X: 7, C: make([]byte, n)})
	r := plan5.NewReader(&loopReader{b: wire}, 0)
	r.Grow(LinkReadBuffer)
	fr := NewFramer(r, io.Discard)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		f, err := fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Data) != n {
			b.Fatalf("read %d bytes, want %d", len(f.Data), n)
		}
	}
}

var _ mux.Counter = (*Framer)(nil)

// cutWriter takes left bytes, then fails.
type cutWriter struct {
	w    io.Writer
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	k := min(len(p), c.left)
	c.left -= k
	n, err := c.w.Write(p[:k])
	if err == nil && k < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// TestFramerCounts: after each WriteFrame, what the Framer says it has
// produced ends exactly after that frame's message on the wire (the
// session finds a frame there, mux.Counter), and a Flush cut short says
// how much the connection took.
func TestFramerCounts(t *testing.T) {
	frames := []mux.Frame{
		{Kind: mux.KindData, ID: 1, Data: []byte("hello")},
		{Kind: mux.KindData, ID: 2, Credit: 4096},
		{Kind: mux.KindData, ID: 3, Data: bytes.Repeat([]byte{0xfe}, 40<<10)}, // more than the write buffer
		{Kind: mux.KindClose, ID: 3},
	}
	var wire bytes.Buffer
	fr := NewFramer(nil, &wire)
	var ends []int64
	for i := range frames {
		if err := fr.WriteFrame(&frames[i]); err != nil {
			t.Fatal(err)
		}
		produced, _ := fr.Counts()
		ends = append(ends, produced)
	}
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	if produced, written := fr.Counts(); produced != int64(wire.Len()) || written != produced {
		t.Fatalf("Counts after a Flush of %d bytes: %d produced, %d written", wire.Len(), produced, written)
	}
	for i, end := range ends {
		r := plan5.NewReader(bytes.NewReader(wire.Bytes()[:end]), 0)
		n := 0
		for {
			if _, err := r.ReadMessage(); err != nil {
				break
			}
			n++
		}
		if n != i+1 {
			t.Errorf("the first %d bytes (produced after frame %d) hold %d whole messages, want %d", end, i, n, i+1)
		}
	}

	total := ends[len(ends)-1]
	for _, k := range []int64{0, ends[0], ends[0] + 5, ends[2], total - 1} {
		fr := NewFramer(nil, &cutWriter{w: io.Discard, left: int(k)})
		var err error
		for i := range frames {
			if err == nil {
				err = fr.WriteFrame(&frames[i])
			}
		}
		if err == nil {
			err = fr.Flush()
		}
		if err == nil {
			t.Errorf("a connection that takes %d of %d bytes: no error", k, total)
		}
		if _, written := fr.Counts(); written != k {
			t.Errorf("a connection that takes %d of %d bytes: Counts says it took %d", k, total, written)
		}
	}
}

// writeCounter is a connection that records each write's bytes.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// TestFramerWriteBuffer: messages written before a Flush leave in one
// write of the connection, a relay's read of Data frames and small
// messages before them too (the small buffer gives way to a large one);
// more than the large buffer holds leaves in a write per bufferful; a
// line longer than any buffer goes out whole, after what was buffered
// before it; after Flush the
// Framer holds no buffer; and every message reads back as it was written.
func TestFramerWriteBuffer(t *testing.T) {
	chunk := plan5.ChunkSize(plan5.DefaultMaxLine)
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*13 + n)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		frames     []mux.Frame
		wantWrites int
	}{
		{"small", []mux.Frame{{Kind: mux.KindAck, ID: 3}, {Kind: mux.KindData, ID: 3, Data: []byte("hi")}}, 1},
		{"small then a relay's read", append([]mux.Frame{{Kind: mux.KindData, ID: 1, Credit: 9}},
			dataFrames(2, payload(256<<10), chunk)...), 1},
		{"two bufferfuls", dataFrames(4, payload(12*chunk), chunk), 2},
		{"a line longer than the large buffer", []mux.Frame{{Kind: mux.KindClose, ID: 1, Reason: "x"},
			{Kind: mux.KindData, ID: 5, Data: payload(largeWbuf)}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wire writeCounter
			w := NewFramer(plan5.NewReader(&wire, 0), &wire)
			for i := range tc.frames {
				if err := w.WriteFrame(&tc.frames[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if wire.writes != tc.wantWrites {
				t.Errorf("%d writes of the connection; want %d", wire.writes, tc.wantWrites)
			}
			if w.wb != nil {
				t.Errorf("the Framer holds a write buffer of %d bytes after Flush", cap(*w.wb))
			}
			produced, written := w.Counts()
			if produced != int64(wire.Len()) || written != produced {
				t.Errorf("Counts = %d, %d; the connection took %d", produced, written, wire.Len())
			}
			r := NewFramer(plan5.NewReader(&wire, 2*largeWbuf), io.Discard)
			for _, want := range tc.frames {
				got, err := r.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if got.Kind != want.Kind || got.ID != want.ID || got.Credit != want.Credit || !bytes.Equal(got.Data, want.Data) {
					t.Fatalf("read %v %d (%d bytes), wrote %v %d (%d bytes)", got.Kind, got.ID, len(got.Data), want.Kind, want.ID, len(want.Data))
				}
			}
		})
	}
}

// dataFrames cuts p into Data frames of stream id, chunk bytes each.
func dataFrames(id int64, p []byte, chunk int) []mux.Frame {
	var fs []mux.Frame
	for len(p) > 0 {
		n := min(len(p), chunk)
		fs = append(fs, mux.Frame{Kind: mux.KindData, ID: id, Data: p[:n]})
		p = p[n:]
	}
	return fs
}
