package plan5

import (
	"bytes"
	"io"
	"testing"
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

var benchSizes = []struct {
	name string
	n    int
}{
	{"plain_3045", ChunkSize(PlainMaxLine)},
	{"16KiB", 16 << 10},
	{"rtcp_49125", ChunkSize(DefaultMaxLine)},
}

func BenchmarkDataEncode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			d := &Data{X: 12345, C: bytes.Repeat([]byte{0xa5}, s.n)}
			buf := AppendMessage(nil, d)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendMessage(buf[:0], d)
			}
		})
	}
}

func BenchmarkDataDecode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			wire := AppendMessage(nil, &Data{X: 12345, C: bytes.Repeat([]byte{0xa5}, s.n)})
			benchDecode(b, wire, s.n)
		})
	}
	// The encoding/json path: what a peer with a different JSON writer
	// (spaces, other key order) costs.
	b.Run("fallback_16KiB", func(b *testing.B) {
		wire := AppendMessage(nil, &Data{X: 12345, C: bytes.Repeat([]byte{0xa5}, 16<<10)})
		wire = bytes.Replace(wire, []byte(`{"X":`), []byte(`{ "X": `), 1)
		benchDecode(b, wire, 16<<10)
	})
}

func benchDecode(b *testing.B, wire []byte, n int) {
	r := NewReader(&loopReader{b: wire}, DefaultMaxLine)
	r.Grow(2 * DefaultMaxLine) // as a link's
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		m, err := r.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if d := m.(*Data); len(d.C) != n {
			b.Fatalf("decoded %d bytes, want %d", len(d.C), n)
		}
	}
}

var _ io.Reader = (*loopReader)(nil)
