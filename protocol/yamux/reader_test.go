package yamux

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func unhex(s string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hdr(t Type, f Flags, id, length uint32) string {
	return string(Header{Type: t, Flags: f, StreamID: id, Length: length}.Append(nil))
}

// session is a whole valid exchange, as a hashicorp client and server
// produce it (both directions interleaved): open with a window grant,
// accept, data both ways, grants, half-closes, a reset stream, pings and
// the end.
func session() string {
	return hdr(TypeWindowUpdate, FlagSYN, 1, 4<<20-InitialWindow) +
		hdr(TypeData, 0, 1, 5) + "hello" +
		hdr(TypeWindowUpdate, FlagACK, 1, 4<<20-InitialWindow) +
		hdr(TypeData, 0, 1, 2) + "hi" +
		hdr(TypeWindowUpdate, 0, 1, 2<<20) +
		hdr(TypeWindowUpdate, FlagFIN, 1, 0) +
		hdr(TypeData, FlagFIN, 1, 3) + "bye" +
		hdr(TypeWindowUpdate, FlagSYN, 2, 0) +
		hdr(TypeWindowUpdate, FlagRST, 2, 0) +
		hdr(TypePing, FlagSYN, 0, 7) +
		hdr(TypePing, FlagACK, 0, 7) +
		hdr(TypeGoAway, 0, 0, GoAwayNormal)
}

// golden are single frames with their exact bytes.
var golden = []struct {
	name string
	wire string
	h    Header
	data string
}{
	{"open", unhex("00 01 00 01 00 00 00 01 00 3c 00 00"),
		Header{Type: TypeWindowUpdate, Flags: FlagSYN, StreamID: 1, Length: 4<<20 - InitialWindow}, ""},
	{"accept", unhex("00 01 00 02 00 00 00 01 00 00 00 00"),
		Header{Type: TypeWindowUpdate, Flags: FlagACK, StreamID: 1}, ""},
	{"data", unhex("00 00 00 00 00 00 00 02 00 00 00 05") + "hello",
		Header{Type: TypeData, StreamID: 2, Length: 5}, "hello"},
	{"data with SYN", unhex("00 00 00 01 ff ff ff ff 00 00 00 01") + "x",
		Header{Type: TypeData, Flags: FlagSYN, StreamID: 0xffffffff, Length: 1}, "x"},
	{"empty data with FIN", unhex("00 00 00 04 00 00 00 03 00 00 00 00"),
		Header{Type: TypeData, Flags: FlagFIN, StreamID: 3}, ""},
	{"window update", unhex("00 01 00 00 00 00 00 03 00 20 00 00"),
		Header{Type: TypeWindowUpdate, StreamID: 3, Length: 2 << 20}, ""},
	{"fin", unhex("00 01 00 04 00 00 00 03 00 00 00 00"),
		Header{Type: TypeWindowUpdate, Flags: FlagFIN, StreamID: 3}, ""},
	{"rst", unhex("00 01 00 08 00 00 00 04 00 00 00 00"),
		Header{Type: TypeWindowUpdate, Flags: FlagRST, StreamID: 4}, ""},
	{"ping", unhex("00 02 00 01 00 00 00 00 00 00 00 2a"),
		Header{Type: TypePing, Flags: FlagSYN, Length: 42}, ""},
	{"pong", unhex("00 02 00 02 00 00 00 00 00 00 00 2a"),
		Header{Type: TypePing, Flags: FlagACK, Length: 42}, ""},
	{"go away", unhex("00 03 00 00 00 00 00 00 00 00 00 01"),
		Header{Type: TypeGoAway, Length: GoAwayProtocolError}, ""},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			if got := string(g.h.Append(nil)); got != g.wire[:HeaderLen] {
				t.Errorf("Append = % x, want % x", got, g.wire[:HeaderLen])
			}
			r := NewReader(strings.NewReader(g.wire), 1024)
			h, data, err := r.ReadFrame()
			if err != nil || h != g.h || string(data) != g.data {
				t.Fatalf("ReadFrame = %v, %q, %v; want %v, %q", h, data, err, g.h, g.data)
			}
			if _, _, err := r.ReadFrame(); err != io.EOF {
				t.Errorf("after the frame: %v, want io.EOF", err)
			}
		})
	}
}

// TestReaderErrors is the table of bad input: each case is the bytes, the
// cap, the sentinel the error wraps (nil: none) and words its text must
// hold.
func TestReaderErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		wire    string
		maxData int
		is      error
		words   []string
	}{
		{"version 1", unhex("01 00 00 00 00 00 00 01 00 00 00 00"), 0, ErrVersion, []string{"version 1", "want 0"}},
		{"type 4", unhex("00 04 00 00 00 00 00 01 00 00 00 00"), 0, ErrType, []string{"type 4"}},
		{"type 255", unhex("00 ff 00 00 00 00 00 01 00 00 00 00"), 0, ErrType, []string{"type 255"}},
		{"data over the cap", hdr(TypeData, 0, 1, 1025) + strings.Repeat("x", 1025), 1024, ErrTooLong, []string{"stream 1", "1025 bytes", "cap of 1024"}},
		{"data of 4 GiB", hdr(TypeData, 0, 1, 0xffffffff), 0, ErrTooLong, []string{"4294967295 bytes", "cap of 262144"}},
		{"header cut short", unhex("00 00 00"), 0, io.ErrUnexpectedEOF, []string{"3 of 12"}},
		{"payload cut short", hdr(TypeData, 0, 9, 10) + "abc", 0, io.ErrUnexpectedEOF, []string{"stream 9", "3 of 10"}},
		{"empty", "", 0, io.EOF, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(c.wire), c.maxData)
			_, _, err := r.ReadFrame()
			if !errors.Is(err, c.is) {
				t.Fatalf("ReadFrame error %v, want one wrapping %v", err, c.is)
			}
			for _, w := range c.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, _, again := r.ReadFrame(); again != err {
				t.Errorf("ReadFrame after %v returned %v", err, again)
			}
		})
	}
}

// TestDataAtTheCap checks that a frame of exactly the cap is read whole,
// also one byte at a time.
func TestDataAtTheCap(t *testing.T) {
	payload := strings.Repeat("y", 5000)
	wire := hdr(TypeData, FlagFIN, 5, 5000) + payload + hdr(TypePing, FlagSYN, 0, 1)
	r := NewReader(iotest.OneByteReader(strings.NewReader(wire)), 5000)
	h, data, err := r.ReadFrame()
	if err != nil || string(data) != payload || h.Flags != FlagFIN {
		t.Fatalf("ReadFrame = %v, %d bytes, %v", h, len(data), err)
	}
	if h, _, err := r.ReadFrame(); err != nil || h.Type != TypePing {
		t.Fatalf("second frame %v, %v", h, err)
	}
}

// TestSessionTranscript reads a whole exchange and re-encodes it.
func TestSessionTranscript(t *testing.T) {
	wire := session()
	r := NewReader(strings.NewReader(wire), 0)
	var out []byte
	n := 0
	for {
		h, data, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(h.Append(out), data...)
		n++
	}
	if n != 12 || !bytes.Equal(out, []byte(wire)) {
		t.Errorf("read %d frames, re-encoded % x\nwant % x", n, out, wire)
	}
}

func TestStrings(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Header{Type: TypeWindowUpdate, Flags: FlagSYN | FlagFIN, StreamID: 1, Length: 3}.String(), "WindowUpdate SYN|FIN stream 1 length 3"},
		{Header{Version: 2, Type: 9, Flags: 0x30}.String(), "version 2 Type(9) 0x30 stream 0 length 0"},
		{Flags(0).String(), "0"},
		{Flags(FlagACK | FlagRST | 0x100).String(), "ACK|RST|0x100"},
		{GoAwayText(GoAwayInternalError), "internal error"},
		{GoAwayText(7), "unknown code 7"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestParseHeaderShort(t *testing.T) {
	if _, err := ParseHeader(make([]byte, 11)); err == nil {
		t.Error("ParseHeader of 11 bytes succeeded")
	}
}

// TestReaderSplit: a Data frame longer than what is buffered comes split;
// its rest is read with ReadRest or taken with Took; reading on before
// the rest is taken, or taking more than it, breaks the Reader.
func TestReaderSplit(t *testing.T) {
	payload := strings.Repeat("y", 40<<10)
	wire := hdr(TypeData, 0, 5, uint32(len(payload))) + payload + hdr(TypeData, 0, 5, 2) + "ok"

	r := NewReader(strings.NewReader(wire), 0)
	h, p, rest, err := r.ReadFrameSplit()
	if err != nil || h.StreamID != 5 || len(p)+rest != len(payload) || rest == 0 {
		t.Fatalf("ReadFrameSplit = %v, %d bytes, rest %d, %v; want stream 5 split", h, len(p), rest, err)
	}
	got := string(p)
	buf := make([]byte, 1000)
	for r.Rest() > 0 {
		n, err := r.ReadRest(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	if got != payload {
		t.Fatalf("split payload differs")
	}
	if n, err := r.ReadRest(buf); n != 0 || err != io.EOF {
		t.Fatalf("ReadRest with no rest = %d, %v; want 0, io.EOF", n, err)
	}
	if h, p, rest, err := r.ReadFrameSplit(); err != nil || string(p) != "ok" || rest != 0 {
		t.Fatalf("next frame = %v %q rest %d, %v", h, p, rest, err)
	}

	r = NewReader(strings.NewReader(wire), 0)
	r.ReadFrameSplit()
	if _, _, err := r.ReadFrame(); err == nil {
		t.Fatal("ReadFrame with the rest not taken returned no error")
	}

	r = NewReader(iotest.HalfReader(strings.NewReader(wire)), 0)
	_, _, rest, _ = r.ReadFrameSplit()
	if err := r.Took(rest + 1); err == nil {
		t.Fatal("Took more than the rest returned no error")
	}
	if _, _, _, err := r.ReadFrameSplit(); err == nil {
		t.Fatal("ReadFrameSplit after a bad Took returned no error")
	}
}

// sizes records the size of every read asked of r.
type sizes struct {
	r     io.Reader
	asked []int
}

func (s *sizes) Read(p []byte) (int, error) {
	s.asked = append(s.asked, len(p))
	return s.r.Read(p)
}

// TestReaderHeaderAlone: after a split frame whose rest the caller took
// from the source, the Reader reads the next header alone, so that a long
// frame that follows is left whole to the caller.
func TestReaderHeaderAlone(t *testing.T) {
	payload := strings.Repeat("z", 40<<10)
	frame := hdr(TypeData, 0, 7, uint32(len(payload))) + payload
	src := &sizes{r: strings.NewReader(frame + frame)}
	r := NewReader(src, 0)
	for i := range 2 {
		_, p, rest, err := r.ReadFrameSplit()
		if err != nil || rest == 0 {
			t.Fatalf("frame %d: %d bytes and rest %d, %v; want it split", i, len(p), rest, err)
		}
		if i == 1 && len(p) != 0 {
			t.Errorf("second frame: %d of its bytes read ahead, want none", len(p))
		}
		if r.Buffered() != 0 {
			t.Fatalf("frame %d: %d bytes buffered past the split", i, r.Buffered())
		}
		if _, err := io.CopyN(io.Discard, src.r, int64(rest)); err != nil {
			t.Fatal(err)
		}
		if err := r.Took(rest); err != nil {
			t.Fatal(err)
		}
	}
	if len(src.asked) != 2 || src.asked[1] != HeaderLen {
		t.Errorf("the Reader asked for reads of %v bytes; want a fill, then the second header alone (%d)", src.asked, HeaderLen)
	}
}
