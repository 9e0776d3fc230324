package yamuxlink

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"

	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

var frameSizes = []int{64, 64 << 10, 256 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkWriteFrame writes one Data frame and flushes, as the session's
// direct write path does.
func BenchmarkWriteFrame(b *testing.B) {
	for _, size := range frameSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			fr := NewFramer(bytes.NewReader(nil), io.Discard, DefaultWindow, false)
			f := &mux.Frame{Kind: mux.KindData, ID: 7, Data: make([]byte, size)}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := fr.WriteFrame(f); err != nil {
					b.Fatal(err)
				}
				if err := fr.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
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

// BenchmarkReadFrame reads Data frames.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range frameSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			wire := yamux.Header{Type: yamux.TypeData, StreamID: 7, Length: uint32(size)}.Append(nil)
			wire = append(wire, make([]byte, size)...)
			fr := NewFramer(&loopReader{b: wire}, io.Discard, DefaultWindow, false)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				f, err := fr.ReadFrame()
				if err != nil || len(f.Data) != size {
					b.Fatal(f, err)
				}
			}
		})
	}
}

// The end-to-end benchmarks run one stream over loopback TCP: a bulk
// transfer in 64 KiB writes, and a 64-byte request and answer (the round
// trip). "ours" is our session on both ends, "hashicorp" is
// hashicorp/yamux on both (rtcp's yamux transport before this package),
// "mixed" is our client against hashicorp's server.

type benchEnds struct {
	a, b  net.Conn // the stream's two ends
	close func()
}

func benchLink(b *testing.B, kind string) benchEnds {
	c1, c2 := tcpPair(b)
	var e benchEnds
	switch kind {
	case "ours":
		s1, s2 := ours(c1, true, nil, nil), ours(c2, false, nil, nil)
		e.a, e.b = openOurs(b, s1, s2.Accept)
		e.close = func() {
			go s2.Close()
			s1.Close()
		}
	case "hashicorp":
		h1, h2 := hcSession(b, c1, false, hcConfig()), hcSession(b, c2, true, hcConfig())
		st, err := h1.OpenStream()
		if err != nil {
			b.Fatal(err)
		}
		st.Write([]byte{0}) // hashicorp's accept waits for the SYN
		acc, err := h2.AcceptStream()
		if err != nil {
			b.Fatal(err)
		}
		acc.Read(make([]byte, 1))
		e.a, e.b = st, acc
		e.close = func() {
			h1.Close()
			h2.Close()
		}
	case "mixed":
		s1 := ours(c1, true, nil, nil)
		h2 := hcSession(b, c2, true, hcConfig())
		e.a, e.b = openOurs(b, s1, h2.AcceptStream)
		e.close = func() {
			h2.Close()
			s1.Close()
		}
	}
	return e
}

var benchKinds = []string{"ours", "hashicorp", "mixed"}

func BenchmarkStreamThroughput(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			e := benchLink(b, kind)
			defer e.close()
			const chunk = 64 << 10
			buf := make([]byte, chunk)
			done := make(chan error, 1)
			total := int64(b.N) * chunk
			go func() {
				_, err := io.CopyN(io.Discard, e.b, total)
				done <- err
			}()
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := e.a.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkStreamRoundTrip(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			e := benchLink(b, kind)
			defer e.close()
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(e.b, buf); err != nil {
						return
					}
					if _, err := e.b.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 64)
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := e.a.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(e.a, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
