package plan5

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"testing/synctest"
)

// pieceReader returns at most n bytes a Read: a connection whose bytes
// arrive in small segments.
type pieceReader struct {
	r io.Reader
	n int
}

func (p *pieceReader) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }

// dataLines are Data bodies of every form readData must read itself or
// leave to the usual path untouched, with what encoding/json makes of
// each (an error if it refuses it).
func dataLines() []string {
	r := rand.New(rand.NewPCG(13, 14))
	var lines []string
	for _, n := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 23, 24, 25, 47, 48, 49, 100, 1000, 3045, 4000, 20000, ChunkSize(DefaultMaxLine)} {
		c := base64.StdEncoding.EncodeToString(randomBytes(r, n))
		lines = append(lines,
			fmt.Sprintf(`{"X":%d,"C":"%s"}`, n, c),
			fmt.Sprintf(`{"X":-%d,"C":"%s","Window":5}`, n, c),
			fmt.Sprintf(`{"X":%d,"C":"%s" }`, n, c),
		)
		if n > 4 {
			lines = append(lines,
				fmt.Sprintf(`{"X":%d,"C":"%s\/%s"}`, n, c[:4], c[5:]),                     // an escape: JSON's \/ is '/'
				fmt.Sprintf(`{"X":%d,"C":"%s"}`, n, c[:len(c)-1]),                         // a character short
				fmt.Sprintf(`{"X":%d,"C":"%s\r%s"}`, n, c[:4], c[4:]),                     // JSON's escape
				fmt.Sprintf("{\"X\":%d,\"C\":\"%s\r%s\"}", n, c[:len(c)-3], c[len(c)-3:]), // a raw CR
				fmt.Sprintf(`{"X":%d,"C":"%s=%s"}`, n, c[:4], c[4:]),
			)
		}
	}
	return append(lines, `{"X":1}`, `{"X":1,"C":""`, `{"X":01,"C":"AA=="}`, `{"X":99999999999999999999,"C":""}`,
		`{"X":1,"C":"AA=="}}`, `{"X":1,"C":"AA==""}`, `{"X":1,"C":"AA"}`, `{"X":1,"C":"AAA="`, `{"X":-,"C":""}`,
		`{"X" :1,"C":"AA=="}`, `{"X":1,"C":"QUJD"}`, `{"X":1,"C":"QQ=="}`, `{"X":1,"C":"QUI="}`, "{\"X\":1,\"C\":\"QQ=\r=\"}", "{\"X\":1,\"C\":\"QUJD\r\"}", `{"X":1,"C":"QUJD\r"}`, `{"X":`, `{`, ``)
}

// TestReadDataPieces: each Data line, then a Data of one byte, through
// readers that give the bytes in pieces of many sizes and buffers of both
// sizes: ReadMessage decodes what the usual path (readLine, then
// decode) does, and consumes the line and nothing more.
func TestReadDataPieces(t *testing.T) {
	for _, body := range dataLines() {
		want, werr := new(Reader).decode(TypeData, []byte(body))
		if len(body) > DefaultMaxLine {
			werr = ErrLineTooLong
		}
		wire := "3\n" + body + "\n3\n{\"X\":1,\"C\":\"QQ==\"}\n"
		pieces := []int{1, 2, 3, 5, 7, 16, 100, 4096, 1 << 20}
		if len(body) > 5000 {
			pieces = []int{100, 4093, 1 << 20} // not a byte at a time
		}
		for _, piece := range pieces {
			for _, grow := range []int{0, 128 << 10} {
				r := NewReader(&pieceReader{strings.NewReader(wire), piece}, 0)
				r.Grow(grow)
				m, err := r.ReadMessage()
				if (err == nil) != (werr == nil) {
					t.Fatalf("%.60q in pieces of %d: %v, want %v", body, piece, err, werr)
				}
				if err != nil {
					if errors.Is(err, ErrLineTooLong) {
						continue
					}
				} else if d, w := m.(*Data), want.(*Data); d.X != w.X || d.Window != w.Window || !bytes.Equal(d.C, w.C) {
					t.Fatalf("%.60q in pieces of %d: got X=%d C=%.20x Window=%d, want X=%d C=%.20x Window=%d",
						body, piece, d.X, d.C, d.Window, w.X, w.C, w.Window)
				}
				m, err = r.ReadMessage()
				if d, ok := m.(*Data); err != nil || !ok || d.X != 1 || string(d.C) != "A" {
					t.Fatalf("%.60q in pieces of %d: the next message read as %+v, %v", body, piece, m, err)
				}
			}
		}
	}
}

// TestReadDataEOF: a connection that ends inside a Data line ends in
// io.ErrUnexpectedEOF, wherever it ends.
func TestReadDataEOF(t *testing.T) {
	wire := "3\n{\"X\":12,\"C\":\"" + base64.StdEncoding.EncodeToString(make([]byte, 100)) + "\"}\n"
	for n := 2; n < len(wire); n++ {
		_, err := NewReader(iotest.HalfReader(strings.NewReader(wire[:n])), 0).ReadMessage()
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("%q: %v, want io.ErrUnexpectedEOF", wire[:n], err)
		}
	}
}

// TestReadDataWaitsForNoMore: a reader given a whole Data line returns it
// (or its error) without waiting for a byte after it, whatever the line.
func TestReadDataWaitsForNoMore(t *testing.T) {
	for _, body := range dataLines() {
		if len(body) > 4096 {
			continue
		}
		synctest.Test(t, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go pw.Write([]byte("3\n" + body + "\n"))
			done := make(chan error, 1)
			go func() {
				_, err := NewReader(iotest.HalfReader(pr), 0).ReadMessage()
				done <- err
			}()
			synctest.Wait()
			select {
			case <-done:
			default:
				t.Fatalf("ReadMessage of %q waits for bytes after the line", body)
			}
		})
	}
}

// FuzzReadData holds readData to the usual path: a Data line, given in
// pieces of any size, decodes as readLine and decode would have it, and
// the line is consumed, nothing more.
func FuzzReadData(f *testing.F) {
	for _, body := range dataLines() {
		if len(body) < 2000 {
			f.Add(body, uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, body string, piece uint8) {
		if strings.IndexByte(body, '\n') >= 0 {
			return
		}
		want, werr := new(Reader).decode(TypeData, []byte(body))
		if len(body) > MinMaxLine {
			werr = ErrLineTooLong
		}
		wire := "3\n" + body + "\n3\n{\"X\":1,\"C\":\"QQ==\"}\n"
		r := NewReader(&pieceReader{strings.NewReader(wire), 1 + int(piece)}, MinMaxLine)
		m, err := r.ReadMessage()
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: %v, want %v", body, err, werr)
		}
		if err != nil {
			if errors.Is(err, ErrLineTooLong) {
				return
			}
		} else if d, w := m.(*Data), want.(*Data); d.X != w.X || d.Window != w.Window || !bytes.Equal(d.C, w.C) {
			t.Fatalf("%q: got %+v, want %+v", body, d, w)
		}
		m, err = r.ReadMessage()
		if d, ok := m.(*Data); err != nil || !ok || d.X != 1 || string(d.C) != "A" {
			t.Fatalf("%q: the next message read as %+v, %v", body, m, err)
		}
	})
}

func TestDecodeQuanta(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, n := range testSizes() {
		enc := []byte(base64.StdEncoding.EncodeToString(randomBytes(r, n)))
		for _, stop := range []int{len(enc), len(enc) / 2, len(enc) / 3} {
			src := append(bytes.Clone(enc[:stop]), '"', '}')
			for _, simd := range simdModes() {
				dst := make([]byte, len(src)+32)
				si, di := decodeQuanta(dst, src, simd)
				// The longest run of whole quanta without padding.
				want := stop / 4 * 4
				if bytes.IndexByte(enc[:want], '=') >= 0 {
					want -= 4
				}
				if si != want {
					t.Fatalf("len %d, stop %d, simd %v: read %d characters, want %d", n, stop, simd, si, want)
				}
				dec, err := base64.StdEncoding.DecodeString(string(enc[:si]))
				if err != nil || !bytes.Equal(dst[:di], dec) {
					t.Fatalf("len %d, stop %d, simd %v: decoded %x, want %x (%v)", n, stop, simd, dst[:di], dec, err)
				}
			}
		}
	}
}

// errOnceReader gives its pieces, failing once with err before the last
// one, as a connection whose read fails does (bufio passes such an error
// on once).
type errOnceReader struct {
	pieces []string
	err    error
}

func (r *errOnceReader) Read(p []byte) (int, error) {
	if r.err != nil && len(r.pieces) == 1 {
		err := r.err
		r.err = nil
		return 0, err
	}
	if len(r.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.pieces[0])
	r.pieces = r.pieces[1:]
	return n, nil
}

// TestReadDataKeepsReadError: a read that fails inside a Data line ends
// ReadMessage with its error, on the usual path and on readData's (which
// must not swallow it, and then decode what came after it).
func TestReadDataKeepsReadError(t *testing.T) {
	errReset := errors.New("connection reset by peer")
	for _, maxLine := range []int{4096, MinMaxLine} { // the usual path, readData
		src := &errOnceReader{pieces: []string{"3\n{\"X\":1,\"C\":\"QU", "JD\"}\n"}, err: errReset}
		if m, err := NewReader(src, maxLine).ReadMessage(); !errors.Is(err, errReset) {
			t.Errorf("maxLine %d: %+v, %v; want %v", maxLine, m, err, errReset)
		}
	}
}

// TestReadDataSlowLineAllocs: a long Data line that comes a few bytes a
// read costs a few buffers, not one (and a copy) per read.
func TestReadDataSlowLineAllocs(t *testing.T) {
	line := "3\n{\"X\":1,\"C\":\"" + base64.StdEncoding.EncodeToString(make([]byte, ChunkSize(DefaultMaxLine))) + "\"}\n"
	r := NewReader(&pieceReader{strings.NewReader(line), 4}, 0)
	r.Grow(128 << 10)
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := r.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		r = NewReader(&pieceReader{strings.NewReader(line), 4}, 0)
		r.Grow(128 << 10)
	})
	if allocs > 100 {
		t.Errorf("a %d-byte Data line read 4 bytes at a time took %v allocations; want a few", len(line), allocs)
	}
}
