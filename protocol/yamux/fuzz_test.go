package yamux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// fuzzCap is the Data cap under fuzzing: small, so that ErrTooLong is
// reachable.
const fuzzCap = 1024

func FuzzReader(f *testing.F) {
	f.Add([]byte(session()))
	for _, g := range golden {
		f.Add([]byte(g.wire))
	}
	// An open with data on the SYN, a reset, and a frame over the cap.
	f.Add([]byte(hdr(TypeData, FlagSYN, 3, 4) + "ping" + hdr(TypeWindowUpdate, FlagRST, 3, 0)))
	f.Add([]byte(hdr(TypeData, 0, 1, fuzzCap+1)))
	f.Add([]byte(hdr(TypeWindowUpdate, FlagACK|FlagFIN, 2, 0) + "\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzCap)
		pos := 0
		for {
			h, payload, err := r.ReadFrame()
			if err != nil {
				switch {
				case err == io.EOF:
					if pos != len(data) {
						t.Fatalf("io.EOF at byte %d of %d, inside a frame", pos, len(data))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if pos == len(data) {
						t.Fatalf("%v at the end of the last frame", err)
					}
				case errors.Is(err, ErrVersion):
					if data[pos] == Version {
						t.Fatalf("%v for version byte 0", err)
					}
				case errors.Is(err, ErrType):
					if data[pos] != Version || data[pos+1] <= byte(TypeGoAway) {
						t.Fatalf("%v for header % x", err, data[pos:pos+HeaderLen])
					}
				case errors.Is(err, ErrTooLong):
					raw := data[pos : pos+HeaderLen]
					if raw[1] != byte(TypeData) || binary.BigEndian.Uint32(raw[8:]) <= fuzzCap {
						t.Fatalf("%v for header % x", err, raw)
					}
				default:
					t.Fatalf("unexpected error from an in-memory stream: %v", err)
				}
				if _, _, again := r.ReadFrame(); again != err {
					t.Fatalf("ReadFrame after %v returned %v", err, again)
				}
				return
			}
			n := HeaderLen + len(payload)
			if pos+n > len(data) {
				t.Fatalf("frame %v at byte %d runs past the %d input bytes", h, pos, len(data))
			}
			raw := data[pos : pos+n]
			pos += n
			if h.Type == TypeData && int(h.Length) != len(payload) || h.Type != TypeData && len(payload) != 0 {
				t.Fatalf("%v came with %d payload bytes", h, len(payload))
			}
			if len(payload) > fuzzCap || cap(r.payload) > max(fuzzCap, 4<<10) {
				t.Fatalf("payload of %d bytes in a buffer of %d, over the cap %d", len(payload), cap(r.payload), fuzzCap)
			}
			if enc := append(h.Append(nil), payload...); !bytes.Equal(enc, raw) {
				t.Fatalf("%v re-encodes to % x, read from % x", h, enc, raw)
			}
		}
	})
}

// chunked returns at most n bytes per Read, so that frames end up split
// across reads.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// FuzzReaderSplit reads the same bytes with ReadFrame and with
// ReadFrameSplit, taking each rest in pieces of step bytes, through
// ReadRest or (when direct is set and nothing is buffered) straight from
// the source with Took: both must see the same frames, payloads and
// error.
func FuzzReaderSplit(f *testing.F) {
	f.Add([]byte(session()), uint16(3), false)
	f.Add([]byte(session()), uint16(1), true)
	f.Add([]byte(hdr(TypeData, 0, 1, 700)+strings.Repeat("x", 700)+hdr(TypeData, FlagFIN, 1, 2)+"ab"), uint16(100), true)
	f.Add([]byte(hdr(TypeData, 0, 1, 700)+strings.Repeat("x", 300)), uint16(7), false)
	f.Fuzz(func(t *testing.T, data []byte, step uint16, direct bool) {
		type frame struct {
			h       Header
			payload string
		}
		var want []frame
		var wantErr error
		r := NewReader(bytes.NewReader(data), fuzzCap)
		for {
			h, p, err := r.ReadFrame()
			if err != nil {
				wantErr = err
				break
			}
			want = append(want, frame{h, string(p)})
		}

		src := &chunked{bytes.NewReader(data), int(step%2048) + 1}
		r = NewReader(src, fuzzCap)
		piece := make([]byte, int(step%64)+1)
		var got []frame
		var gotErr error
	frames:
		for {
			h, p, rest, err := r.ReadFrameSplit()
			if err != nil {
				gotErr = err
				break
			}
			if rest < 0 || h.Type != TypeData && rest != 0 || rest > 0 && len(p)+rest != int(h.Length) {
				t.Fatalf("%v split as %d bytes and %d to come", h, len(p), rest)
			}
			payload := string(p)
			for r.Rest() > 0 {
				var n int
				var err error
				if direct && r.Buffered() == 0 {
					n, err = src.Read(piece[:min(len(piece), r.Rest())])
					if n > 0 {
						if terr := r.Took(n); terr != nil {
							t.Fatalf("Took(%d) with %d to come: %v", n, r.Rest(), terr)
						}
					}
					if err != nil {
						err = r.Fail(err)
					}
				} else {
					n, err = r.ReadRest(piece)
				}
				payload += string(piece[:n])
				if err != nil {
					gotErr = err
					break frames
				}
			}
			got = append(got, frame{h, payload})
		}
		if len(got) != len(want) {
			t.Fatalf("split reading got %d frames, ReadFrame %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("frame %d: split reading got %v %q, ReadFrame %v %q", i, got[i].h, got[i].payload, want[i].h, want[i].payload)
			}
		}
		if (gotErr == io.EOF) != (wantErr == io.EOF) || errors.Is(gotErr, io.ErrUnexpectedEOF) != errors.Is(wantErr, io.ErrUnexpectedEOF) {
			t.Fatalf("split reading ended with %v, ReadFrame with %v", gotErr, wantErr)
		}
		if _, _, _, again := r.ReadFrameSplit(); again != gotErr && gotErr != io.EOF {
			t.Fatalf("ReadFrameSplit after %v returned %v", gotErr, again)
		}
	})
}
