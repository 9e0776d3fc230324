package yamux

import (
	"bytes"
	"strconv"
	"testing"
)

var sink Header

func BenchmarkHeaderAppend(b *testing.B) {
	h := Header{Type: TypeData, Flags: FlagACK, StreamID: 12345, Length: 65536}
	buf := make([]byte, 0, HeaderLen)
	b.SetBytes(HeaderLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = h.Append(buf[:0])
	}
}

func BenchmarkParseHeader(b *testing.B) {
	buf := Header{Type: TypeWindowUpdate, Flags: FlagSYN, StreamID: 7, Length: 1 << 20}.Append(nil)
	b.SetBytes(HeaderLen)
	b.ReportAllocs()
	for b.Loop() {
		h, err := ParseHeader(buf)
		if err != nil {
			b.Fatal(err)
		}
		sink = h
	}
}

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

func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{0, 64, 64 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			wire := Header{Type: TypeData, StreamID: 1, Length: uint32(size)}.Append(nil)
			wire = append(wire, bytes.Repeat([]byte{0xa5}, size)...)
			r := NewReader(&loopReader{b: wire}, 64<<10)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				h, _, err := r.ReadFrame()
				if err != nil {
					b.Fatal(err)
				}
				sink = h
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
