package yamux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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
