package plan5

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// Tests of Reader.Grow: swapping to a bigger buffer in the middle of a
// connection must not lose, repeat or reorder a byte, whatever the old
// buffer held at the time (often part of a line).

// growSize is the size links grow to (plan5link.LinkReadBuffer).
const growSize = 2 * DefaultMaxLine

// chunkReader returns data in reads of the sizes in first, then of chunk
// bytes each (every size at least 1).
type chunkReader struct {
	data  []byte
	first []int
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := r.chunk
	if len(r.first) > 0 {
		n, r.first = r.first[0], r.first[1:]
	}
	n = min(max(n, 1), len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// readResult is what a Reader made of a connection: each message
// re-encoded, and the error that ended it.
type readResult struct {
	msgs    [][]byte
	err     error
	partial bool // Grow was called with part of a line buffered
	grew    bool
}

// readAllGrowing reads r to its first error, calling Grow(size) once
// growAfter messages have been read (never if growAfter < 0).
func readAllGrowing(r *Reader, growAfter, size int) readResult {
	var res readResult
	for {
		if len(res.msgs) == growAfter && !res.grew {
			b := r.Buffered()
			held, _ := b.Peek(b.Buffered())
			res.partial = len(held) > 0 && held[len(held)-1] != '\n'
			r.Grow(size)
			res.grew = true
		}
		m, err := r.ReadMessage()
		if err != nil {
			res.err = err
			return res
		}
		res.msgs = append(res.msgs, AppendMessage(nil, m))
	}
}

// diffResults says how two readings differ, or "".
func diffResults(want, got readResult) string {
	n := min(len(want.msgs), len(got.msgs))
	for i := range n {
		if !bytes.Equal(want.msgs[i], got.msgs[i]) {
			return fmt.Sprintf("message %d is %.80q, want %.80q", i, got.msgs[i], want.msgs[i])
		}
	}
	if len(want.msgs) != len(got.msgs) {
		return fmt.Sprintf("%d messages, want %d", len(got.msgs), len(want.msgs))
	}
	if fmt.Sprint(want.err) != fmt.Sprint(got.err) {
		return fmt.Sprintf("ended with %v, want %v", got.err, want.err)
	}
	return ""
}

// longTranscript is a link's traffic whose lines straddle NewReader's
// 4 KiB buffer: Data of every size up to a few KiB.
func longTranscript() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := []Message{&Aloha{V: Version, R: RoleDP, N: "rtcp", Window: 262144, MaxLine: 65536, HalfClose: true}}
	for i := range 12 {
		c := make([]byte, rng.IntN(6000))
		for j := range c {
			c[j] = byte(rng.Uint32())
		}
		msgs = append(msgs, &Data{X: int64(i % 3), C: c}, &Data{X: 1, Window: 1 + i})
	}
	msgs = append(msgs, &Close{X: 1, Half: true}, &Close{X: -1, R: "bye", Abort: true})
	return transcript(msgs...)
}

// TestGrowKeepsBuffered reads conversations through readers that return
// them in pieces of many sizes and Grow after 0, 1, 2 or 3 messages: the
// messages and the end are exactly those of a Reader that never grows,
// including when Grow finds part of a line in the old buffer.
func TestGrowKeepsBuffered(t *testing.T) {
	transcripts := fuzzSeeds()[:8] // the valid conversations
	transcripts = append(transcripts, longTranscript(),
		// Truncated in the middle of a line: the end must be the same too.
		longTranscript()[:20000])
	partial := 0
	for ti, data := range transcripts {
		stride, chunks := 3, []int{5, 1 << 20}
		if len(data) > 2000 {
			stride, chunks = 997, []int{1000, 1 << 20}
		}
		for first := 1; first <= len(data); first += stride {
			for _, chunk := range chunks {
				newReader := func() *Reader {
					return NewReader(&chunkReader{data: data, first: []int{first}, chunk: chunk}, 0)
				}
				want := readAllGrowing(newReader(), -1, 0)
				if ti < 8 && want.err != io.EOF {
					t.Fatalf("transcript %d does not decode: %v", ti, want.err)
				}
				for growAfter := range 4 {
					got := readAllGrowing(newReader(), growAfter, growSize)
					if d := diffResults(want, got); d != "" {
						t.Fatalf("transcript %d (%d bytes), first read %d, then %d, Grow after %d messages (part of a line buffered: %v): %s",
							ti, len(data), first, chunk, growAfter, got.partial, d)
					}
					if got.partial {
						partial++
					}
				}
			}
		}
	}
	if partial == 0 {
		t.Error("Grow never found part of a line buffered: the test does not test the swap")
	}
	t.Logf("%d readings grew with part of a line buffered", partial)
}

// TestGrowTwiceAndNoShrink: Grow to a size the reader has is nothing, and
// growing twice keeps every byte.
func TestGrowTwiceAndNoShrink(t *testing.T) {
	data := longTranscript()
	r := NewReader(bytes.NewReader(data), 0)
	before := r.Buffered()
	r.Grow(100)
	r.Grow(before.Size())
	if r.Buffered() != before {
		t.Fatal("Grow to a size no bigger than the buffer replaced the buffer")
	}
	big := NewReader(bufio.NewReaderSize(bytes.NewReader(data), growSize), 0)
	bigBuf := big.Buffered()
	big.Grow(growSize)
	if big.Buffered() != bigBuf {
		t.Fatal("Grow of a reader given a big enough bufio.Reader replaced it")
	}

	want := readAllGrowing(NewReader(bytes.NewReader(data), 0), -1, 0)
	r = NewReader(&chunkReader{data: data, chunk: 1000}, 0)
	var got readResult
	for _, size := range []int{8 << 10, growSize} {
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got.msgs = append(got.msgs, AppendMessage(nil, m))
		r.Grow(size)
		if r.Buffered().Size() < size {
			t.Fatalf("after Grow(%d) the buffer holds %d", size, r.Buffered().Size())
		}
	}
	rest := readAllGrowing(r, -1, 0)
	got.msgs, got.err = append(got.msgs, rest.msgs...), rest.err
	if d := diffResults(want, got); d != "" {
		t.Fatalf("growing twice: %s", d)
	}
}

// errClass names the documented error err is, for comparing readers whose
// buffers differ.
func errClass(err error) string {
	switch {
	case err == io.EOF:
		return "EOF"
	case err == io.ErrUnexpectedEOF:
		return "UnexpectedEOF"
	case errors.Is(err, ErrBadType):
		return "BadType"
	case errors.Is(err, ErrBadJSON):
		return "BadJSON"
	case errors.Is(err, ErrLineTooLong):
		return "LineTooLong"
	}
	return fmt.Sprintf("undocumented %T: %v", err, err)
}

// FuzzGrow reads the same bytes, in the same pieces, with a Reader that
// never grows and with one that grows after its first message (to a size
// from 3840 bytes, which is no growth, to 68 KiB): they must
// return the same messages and end the same way. (The one difference a
// bigger buffer may make: a last line longer than the small buffer and
// cut off by the end of the connection is "too long" to the small reader
// and "unexpected EOF" to the big one.)
func FuzzGrow(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint16(i*7), uint8(i), uint8(i*40))
		f.Add(s, uint16(len(s)/2), uint8(255), uint8(255))
	}
	f.Fuzz(func(t *testing.T, data []byte, first uint16, chunk, size uint8) {
		newReader := func() *Reader {
			src := &chunkReader{data: data, first: []int{1 + int(first)}, chunk: 1 + int(chunk)}
			return NewReader(src, MinMaxLine*2)
		}
		want := readAllGrowing(newReader(), -1, 0)
		got := readAllGrowing(newReader(), 1, 3840+256*int(size))
		if d := diffResults(want, got); d == "" {
			return
		}
		n := min(len(want.msgs), len(got.msgs))
		for i := range n {
			if !bytes.Equal(want.msgs[i], got.msgs[i]) {
				t.Fatalf("message %d is %q after Grow, %q without", i, got.msgs[i], want.msgs[i])
			}
		}
		if len(want.msgs) != len(got.msgs) {
			t.Fatalf("%d messages after Grow, %d without (then %v and %v)", len(got.msgs), len(want.msgs), got.err, want.err)
		}
		wc, gc := errClass(want.err), errClass(got.err)
		switch {
		case strings.HasPrefix(wc, "undocumented") || strings.HasPrefix(gc, "undocumented"):
			t.Fatalf("ended with %s after Grow, %s without", gc, wc)
		case wc == gc && wc == "LineTooLong":
			// The texts differ with the buffer: "more than N bytes
			// without a newline" or "N bytes, the limit is".
		case wc != gc && gc == "UnexpectedEOF" && (wc == "LineTooLong" || wc == "BadType"):
			// The one difference a bigger buffer makes (see above).
		default:
			t.Fatalf("ended with %v after Grow, %v without", got.err, want.err)
		}
	})
}
