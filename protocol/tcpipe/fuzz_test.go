package tcpipe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(transcript()))
	for _, g := range golden {
		f.Add([]byte(g.wire))
	}
	// A session: Connect, data both ways, the user application leaves.
	f.Add([]byte(unhex("00 00 00 15 00 00 00 04 01 00 40 9c") +
		unhex("00 00 00 15 00 00 00 06 00 00 40 9c") + "hi" +
		unhex("00 00 00 15 00 00 00 06 00 01 40 9c") + "ho" +
		unhex("00 00 00 15 00 00 00 04 02 00 40 9c")))
	f.Add([]byte(unhex("00 00 00 15 00 00 00 05 00 02 50 00 aa") + golden[0].wire))
	f.Add([]byte(unhex("00 00 00 15 00 00 04 05")))
	f.Add([]byte(unhex("15 00 00 00 04 00 00 00 01 00 50 00")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		pos := 0
		for {
			fr, err := r.ReadFrame()
			if err != nil && !errors.Is(err, ErrInvalidFrame) {
				switch {
				case err == io.EOF:
					if pos != len(data) {
						t.Fatalf("io.EOF at byte %d of %d, inside a frame", pos, len(data))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if pos == len(data) {
						t.Fatalf("%v at the end of the last frame", err)
					}
				case errors.Is(err, ErrCorrupt):
					if len(data)-pos < HeaderLen {
						t.Fatalf("%v with only %d bytes left", err, len(data)-pos)
					}
					hdr := data[pos : pos+HeaderLen]
					size := binary.BigEndian.Uint32(hdr[4:])
					if binary.BigEndian.Uint32(hdr) == Magic && size >= bodyHeaderLen && size <= maxBody {
						t.Fatalf("%v for a valid link header % x", err, hdr)
					}
				default:
					t.Fatalf("unexpected error from an in-memory stream: %v", err)
				}
				if _, again := r.ReadFrame(); again != err {
					t.Fatalf("ReadFrame after %v returned %v", err, again)
				}
				return
			}
			n := HeaderLen + bodyHeaderLen + len(fr.Data)
			if pos+n > len(data) {
				t.Fatalf("frame %v at byte %d runs past the %d input bytes", fr, pos, len(data))
			}
			raw := data[pos : pos+n]
			pos += n
			if fr.Kind != Kind(raw[8]) || fr.Local != (raw[9] != 0) || fr.Port != binary.LittleEndian.Uint16(raw[10:]) ||
				!bytes.Equal(fr.Data, raw[HeaderLen+bodyHeaderLen:]) {
				t.Fatalf("ReadFrame = %v, data % x; the bytes are % x", fr, fr.Data, raw)
			}
			enc, encErr := AppendFrame(nil, fr)
			if err != nil {
				if encErr == nil && raw[9] <= 1 {
					t.Fatalf("ReadFrame rejected %v (%v) but AppendFrame encodes it", fr, err)
				}
				continue
			}
			if encErr != nil {
				t.Fatalf("ReadFrame accepted %v but AppendFrame rejects it: %v", fr, encErr)
			}
			if !bytes.Equal(enc, raw) {
				t.Fatalf("%v re-encodes to % x, read from % x", fr, enc, raw)
			}
		}
	})
}

// FuzzReadAuth checks that the handshake's decoder never panics, that
// every message it accepts re-encodes to its own bytes, and that it reads
// nothing past the message.
func FuzzReadAuth(f *testing.F) {
	for _, g := range goldenAuth {
		f.Add([]byte(g.wire))
		f.Add([]byte(g.wire + golden[0].wire))
	}
	f.Add([]byte(golden[0].wire))
	f.Add([]byte("rtcp" + unhex("00 00 00 c9 04") + strings.Repeat("é", 100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		m, err := r.ReadAuth()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error from an in-memory stream: %v", err)
			}
			if _, again := r.ReadAuth(); again != err {
				t.Fatalf("ReadAuth after %v returned %v", err, again)
			}
			return
		}
		enc, err := AppendAuth(nil, m)
		if err != nil {
			t.Fatalf("ReadAuth accepted %+v but AppendAuth rejects it: %v", m, err)
		}
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("%+v re-encodes to % x, read from % x", m, enc, data[:min(len(data), len(enc))])
		}
		// What follows is the next message's or frame's.
		if f, ferr := r.ReadFrame(); ferr == nil {
			if n := len(enc) + HeaderLen + bodyHeaderLen + len(f.Data); n > len(data) {
				t.Fatalf("a frame after the message runs past the input")
			}
		}
	})
}
