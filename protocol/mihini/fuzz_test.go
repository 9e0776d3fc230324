package mihini

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	// Seeds stay small: the fuzzer slows to a crawl on inputs of 64 KiB.
	var small []byte
	for _, g := range golden {
		if len(g.wire) < 1024 {
			f.Add([]byte(g.wire))
			small = append(small, g.wire...)
		}
	}
	f.Add(small)
	f.Add([]byte(unhex("00 00 04 00 00 0d 01 01 00 09") + "127.0.0.1" + unhex("b7 9a 00 02 03 01 68 69 00 00 02 01")))
	f.Add([]byte(unhex("00 02 03 02 68 69 00 0d 01 02 00 09") + "127.0.0.1" + unhex("b7 9a"))) // DATA before CONNECT
	f.Add([]byte(unhex("00 03 02 04") + "bye" + unhex("00 00 03 05")))
	f.Add([]byte(unhex("00 04 01 05 ff ff 00 50")))
	f.Add([]byte(unhex("ff ff 03")))
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
				default:
					t.Fatalf("unexpected error from an in-memory stream: %v", err)
				}
				if _, again := r.ReadFrame(); again != err {
					t.Fatalf("ReadFrame after %v returned %v", err, again)
				}
				return
			}
			n := HeaderLen + len(fr.Payload)
			if pos+n > len(data) {
				t.Fatalf("frame %v at byte %d runs past the %d input bytes", fr, pos, len(data))
			}
			raw := data[pos : pos+n]
			pos += n
			if fr.Command != Command(raw[2]) || fr.Client != raw[3] || !bytes.Equal(fr.Payload, raw[HeaderLen:]) {
				t.Fatalf("ReadFrame = %v, payload % x; the bytes are % x", fr, fr.Payload, raw)
			}
			enc, encErr := AppendFrame(nil, fr)
			if err != nil {
				if encErr == nil {
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
			if fr.Command == Connect {
				host, port, err := ParseConnect(fr.Payload)
				if err != nil {
					t.Fatalf("ReadFrame accepted %v but ParseConnect rejects it: %v", fr, err)
				}
				if p, err := AppendConnect(nil, host, port); err != nil || !bytes.Equal(p, fr.Payload) {
					t.Fatalf("CONNECT %q %d re-encodes to % x, %v; read from % x", host, port, p, err, fr.Payload)
				}
			}
		}
	})
}

func FuzzParseConnect(f *testing.F) {
	f.Add([]byte(unhex("00 09") + "127.0.0.1" + unhex("b7 9a")))
	f.Add([]byte(unhex("00 03") + "::1" + unhex("00 01")))
	f.Add([]byte(unhex("00 00 00 50")))
	f.Add([]byte(unhex("ff ff 00")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		host, port, err := ParseConnect(payload)
		_, frameErr := AppendFrame(nil, Frame{Command: Connect, Client: 1, Payload: payload})
		if err != nil {
			if !errors.Is(err, ErrInvalidFrame) {
				t.Fatalf("ParseConnect error %v does not wrap ErrInvalidFrame", err)
			}
			if frameErr == nil {
				t.Fatalf("ParseConnect rejects % x (%v) but AppendFrame accepts it as a CONNECT payload", payload, err)
			}
			return
		}
		if frameErr != nil {
			t.Fatalf("ParseConnect accepts % x but AppendFrame rejects it: %v", payload, frameErr)
		}
		p, err := AppendConnect(nil, host, port)
		if err != nil || !bytes.Equal(p, payload) {
			t.Fatalf("ParseConnect(% x) = %q, %d, which re-encodes to % x, %v", payload, host, port, p, err)
		}
	})
}
