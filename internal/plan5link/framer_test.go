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
