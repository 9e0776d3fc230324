package mihini

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// unhex decodes hex digits, ignoring spaces, and panics on anything else:
// it only ever sees literals of this file.
func unhex(s string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return string(b)
}

var max65535 = bytes.Repeat([]byte{0xa5}, MaxPayload)

// golden holds one frame of every kind with its exact bytes on the wire.
var golden = []struct {
	name  string
	frame Frame
	wire  string
}{
	{"listen", Frame{Command: Listen}, unhex("00 00 04 00")},
	{
		// Observed on a real peer.
		"connect observed",
		Frame{Command: Connect, Client: 1, Payload: []byte(unhex("00 09") + "127.0.0.1" + unhex("b7 9a"))},
		unhex("00 0d 01 01 00 09") + "127.0.0.1" + unhex("b7 9a"),
	},
	{
		"connect host name",
		Frame{Command: Connect, Client: 0, Payload: []byte(unhex("00 0b") + "example.org" + unhex("00 17"))},
		unhex("00 0f 01 00 00 0b") + "example.org" + unhex("00 17"),
	},
	{"close client 1", Frame{Command: Close, Client: 1}, unhex("00 00 02 01")},
	{"close client 0", Frame{Command: Close, Client: 0}, unhex("00 00 02 00")},
	{"data", Frame{Command: Data, Client: 255, Payload: []byte("hello")}, unhex("00 05 03 ff") + "hello"},
	{"data empty", Frame{Command: Data, Client: 7}, unhex("00 00 03 07")},
	{"data binary", Frame{Command: Data, Client: 2, Payload: []byte{0, 0, 4, 0}}, unhex("00 04 03 02 00 00 04 00")},
	{"data max", Frame{Command: Data, Client: 9, Payload: max65535}, unhex("ff ff 03 09") + string(max65535)},
}

// transcript is every golden frame, in order, in one stream.
func transcript() string {
	var b strings.Builder
	for _, g := range golden {
		b.WriteString(g.wire)
	}
	return b.String()
}

// frameDiff is cmp.Diff for frames, quick when they are equal: comparing
// large payloads by reflection is slow under the race detector.
func frameDiff(a, b Frame) string {
	if a.Command == b.Command && a.Client == b.Client && bytes.Equal(a.Payload, b.Payload) {
		return ""
	}
	return cmp.Diff(a, b, cmpopts.EquateEmpty())
}

func TestAppendFrameGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			got, err := AppendFrame(nil, g.frame)
			if err != nil {
				t.Fatalf("AppendFrame(%v): %v", g.frame, err)
			}
			if string(got) != g.wire {
				t.Errorf("AppendFrame(%v) =\n% x\nwant\n% x", g.frame, head(got), head([]byte(g.wire)))
			}
			got, err = AppendFrame([]byte("prefix"), g.frame)
			if err != nil || string(got) != "prefix"+g.wire {
				t.Errorf("AppendFrame(prefix, %v) does not append to dst (err %v)", g.frame, err)
			}
		})
	}
}

// head shortens a long slice for a failure message.
func head(b []byte) []byte { return b[:min(len(b), 32)] }

func TestReadFrameGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(g.wire))
			got, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if diff := frameDiff(g.frame, got); diff != "" {
				t.Errorf("ReadFrame mismatch (-want +got):\n%s", diff)
			}
			if _, err := r.ReadFrame(); err != io.EOF {
				t.Errorf("ReadFrame after the only frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameTranscript(t *testing.T) {
	// Several frames in one read, one byte per read, and the last bytes
	// delivered together with io.EOF.
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			r := NewReader(wrap(strings.NewReader(transcript())))
			for _, g := range golden {
				got, err := r.ReadFrame()
				if err != nil {
					t.Fatalf("ReadFrame for %s: %v", g.name, err)
				}
				if diff := frameDiff(g.frame, got); diff != "" {
					t.Fatalf("ReadFrame for %s (-want +got):\n%s", g.name, diff)
				}
			}
			if _, err := r.ReadFrame(); err != io.EOF {
				t.Errorf("ReadFrame at the end: %v, want io.EOF", err)
			}
		})
	}
}

func TestNewReaderKeepsPeekedBytes(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(transcript()))
	if p, err := br.Peek(HeaderLen); err != nil || string(p) != golden[0].wire {
		t.Fatalf("Peek = % x, %v", p, err)
	}
	got, err := NewReader(br).ReadFrame()
	if err != nil || got.Command != Listen {
		t.Fatalf("ReadFrame after Peek = %v, %v; want LISTEN", got, err)
	}
}

func TestConnectPayload(t *testing.T) {
	tests := []struct {
		host string
		port uint16
		wire string
	}{
		{"127.0.0.1", 47002, unhex("00 09") + "127.0.0.1" + unhex("b7 9a")},
		{"::1", 1, unhex("00 03") + "::1" + unhex("00 01")},
		{"h", 0, unhex("00 01") + "h" + unhex("00 00")},
		{strings.Repeat("x", maxAddress), 65535, unhex("ff fb") + strings.Repeat("x", maxAddress) + unhex("ff ff")},
	}
	for _, tt := range tests {
		got, err := AppendConnect(nil, tt.host, tt.port)
		if err != nil || string(got) != tt.wire {
			t.Errorf("AppendConnect(%.20q, %d) = % x, %v; want % x", tt.host, tt.port, head(got), err, head([]byte(tt.wire)))
		}
		host, port, err := ParseConnect([]byte(tt.wire))
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("ParseConnect(% x) = %.20q, %d, %v; want %.20q, %d", head([]byte(tt.wire)), host, port, err, tt.host, tt.port)
		}
		if _, err := AppendFrame(nil, Frame{Command: Connect, Client: 3, Payload: got}); err != nil {
			t.Errorf("AppendFrame of CONNECT for %.20q: %v", tt.host, err)
		}
	}
}

func TestConnectPayloadInvalid(t *testing.T) {
	t.Run("append", func(t *testing.T) {
		for _, tt := range []struct {
			host string
			want string
		}{
			{"", "mihini: CONNECT address is empty; name the host the device should dial"},
			{strings.Repeat("x", maxAddress+1), "mihini: CONNECT address of 65532 bytes exceeds 65531, the most a frame carries"},
		} {
			dst := []byte("keep")
			got, err := AppendConnect(dst, tt.host, 80)
			checkErr(t, err, ErrInvalidFrame, tt.want)
			if string(got) != "keep" {
				t.Errorf("AppendConnect(%.20q) changed dst to % x", tt.host, head(got))
			}
		}
	})
	t.Run("parse", func(t *testing.T) {
		for _, tt := range []struct {
			payload string
			want    string
		}{
			{"", "mihini: CONNECT payload: 0 bytes are too short for the 2-byte address length"},
			{unhex("00"), "mihini: CONNECT payload: 1 bytes are too short for the 2-byte address length"},
			{unhex("00 00 00 50"), "mihini: CONNECT payload: the address is empty; the server must name the host the device should dial"},
			{unhex("00 09") + "127.0.0.1", "mihini: CONNECT payload: 11 bytes, but an address of 9 bytes makes it 13 (2-byte length, address, 2-byte port)"},
			{unhex("00 09") + "127.0.0.1" + unhex("b7"), "mihini: CONNECT payload: 12 bytes, but an address of 9 bytes makes it 13"},
			{unhex("00 09") + "127.0.0.1" + unhex("b7 9a 00"), "mihini: CONNECT payload: 14 bytes, but an address of 9 bytes makes it 13"},
			{unhex("ff ff") + "x", "mihini: CONNECT payload: 3 bytes, but an address of 65535 bytes makes it 65539"},
		} {
			host, port, err := ParseConnect([]byte(tt.payload))
			checkErr(t, err, ErrInvalidFrame, tt.want)
			if host != "" || port != 0 {
				t.Errorf("ParseConnect(% x) = %q, %d with an error; want zero values", tt.payload, host, port)
			}
		}
	})
}

// checkErr fails unless err matches sentinel and its message begins with want.
func checkErr(t *testing.T, err, sentinel error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("got no error, want %q", want)
	case !errors.Is(err, sentinel):
		t.Errorf("error %q does not match %v", err, sentinel)
	case !strings.HasPrefix(err.Error(), want):
		t.Errorf("error is\n\t%s\nwant it to begin with\n\t%s", err, want)
	}
}

func TestAppendFrameInvalid(t *testing.T) {
	tests := []struct {
		name  string
		frame Frame
		want  string
	}{
		{"data too large", Frame{Command: Data, Client: 3, Payload: make([]byte, 70000)},
			"mihini: DATA payload of 70000 bytes for client 3 exceeds 65535, the most one frame carries; split it"},
		{"unknown command 0", Frame{Command: 0, Client: 1},
			"mihini: unknown command 0 for client 1 (want CONNECT 1, CLOSE 2, DATA 3 or LISTEN 4)"},
		{"unknown command 5", Frame{Command: 5, Client: 1, Payload: []byte("x")}, "mihini: unknown command 5 for client 1"},
		{"listen with client", Frame{Command: Listen, Client: 1},
			"mihini: LISTEN must be exactly 00 00 04 00, got client id 1 and 0 payload bytes"},
		{"listen with payload", Frame{Command: Listen, Payload: []byte("x")},
			"mihini: LISTEN must be exactly 00 00 04 00, got client id 0 and 1 payload bytes"},
		{"close with payload", Frame{Command: Close, Client: 4, Payload: []byte("bye")},
			"mihini: CLOSE for client 4 carries 3 payload bytes; CLOSE has none"},
		{"connect without payload", Frame{Command: Connect, Client: 5},
			"mihini: CONNECT for client 5: 0 bytes are too short for the 2-byte address length"},
		{"connect empty address", Frame{Command: Connect, Client: 5, Payload: []byte(unhex("00 00 00 50"))},
			"mihini: CONNECT for client 5: the address is empty"},
		{"connect too large", Frame{Command: Connect, Client: 5, Payload: make([]byte, MaxPayload+1)},
			"mihini: CONNECT payload of 65536 bytes for client 5 exceeds 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendFrame(dst, tt.frame)
			checkErr(t, err, ErrInvalidFrame, tt.want)
			if string(got) != "keep" {
				t.Errorf("AppendFrame changed dst to % x", head(got))
			}
		})
	}
}

func TestReadFrameInvalid(t *testing.T) {
	// Each case is a frame that is well delimited but breaks the protocol. The
	// Reader returns it with the error and goes on to the next frame.
	tests := []struct {
		name string
		wire string
		want string
	}{
		{"command 0", unhex("00 00 00 01"),
			"mihini: unknown command 0 for client 1 (want CONNECT 1, CLOSE 2, DATA 3 or LISTEN 4)"},
		{"command 5 with payload", unhex("00 02 05 09 aa bb"), "mihini: unknown command 5 for client 9"},
		{"command 255", unhex("00 00 ff ff"), "mihini: unknown command 255 for client 255"},
		{"listen with client", unhex("00 00 04 01"),
			"mihini: LISTEN must be exactly 00 00 04 00, got client id 1 and 0 payload bytes"},
		{"listen with payload", unhex("00 01 04 00 00"),
			"mihini: LISTEN must be exactly 00 00 04 00, got client id 0 and 1 payload bytes"},
		{"close with payload", unhex("00 03 02 04") + "bye", "mihini: CLOSE for client 4 carries 3 payload bytes; CLOSE has none"},
		{"connect without payload", unhex("00 00 01 05"),
			"mihini: CONNECT for client 5: 0 bytes are too short for the 2-byte address length"},
		{"connect without port", unhex("00 0b 01 05 00 09") + "127.0.0.1",
			"mihini: CONNECT for client 5: 11 bytes, but an address of 9 bytes makes it 13"},
		{"connect empty address", unhex("00 04 01 05 00 00 00 50"), "mihini: CONNECT for client 5: the address is empty"},
		{"connect address overruns", unhex("00 04 01 05 ff ff 00 50"),
			"mihini: CONNECT for client 5: 4 bytes, but an address of 65535 bytes makes it 65539"},
	}
	next := golden[5] // a DATA frame
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.wire + next.wire))
			f, err := r.ReadFrame()
			checkErr(t, err, ErrInvalidFrame, tt.want)
			if want := tt.wire[HeaderLen:]; f.Command != Command(tt.wire[2]) || f.Client != tt.wire[3] || string(f.Payload) != want {
				t.Errorf("ReadFrame returned %v with payload % x; want the frame's own fields", f, f.Payload)
			}
			got, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("ReadFrame after the invalid frame: %v", err)
			}
			if diff := frameDiff(next.frame, got); diff != "" {
				t.Errorf("frame after the invalid one (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	// Cut the transcript at every length, and at the edges of the largest
	// frame: io.EOF only at a frame boundary, io.ErrUnexpectedEOF inside a
	// frame, and that error stays.
	stream := transcript()
	boundary := map[int]bool{0: true}
	end := 0
	for _, g := range golden {
		end += len(g.wire)
		boundary[end] = true
	}
	var cuts []int
	for cut := range len(stream) - MaxPayload {
		cuts = append(cuts, cut)
	}
	for _, cut := range []int{1, 3, 4, 5, MaxPayload, MaxPayload + 3} {
		cuts = append(cuts, len(stream)-cut)
	}
	for _, cut := range cuts {
		r := NewReader(strings.NewReader(stream[:cut]))
		var err error
		for err == nil {
			_, err = r.ReadFrame()
		}
		if boundary[cut] {
			if err != io.EOF {
				t.Fatalf("cut at %d (a frame boundary): %v, want io.EOF", cut, err)
			}
			continue
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "mihini: ") {
			t.Fatalf("cut at %d (inside a frame): %v, want a mihini error wrapping io.ErrUnexpectedEOF", cut, err)
		}
		if _, again := r.ReadFrame(); again != err {
			t.Fatalf("cut at %d: second ReadFrame returned %v, want the same %v", cut, again, err)
		}
	}
	r := NewReader(strings.NewReader(unhex("00 05 03 01") + "he"))
	_, err := r.ReadFrame()
	if want := "mihini: payload of DATA for client 1 cut short after 2 of 5 bytes: unexpected EOF"; err == nil || err.Error() != want {
		t.Errorf("truncated DATA: %v, want %s", err, want)
	}
	r = NewReader(strings.NewReader(unhex("00 05 03")))
	_, err = r.ReadFrame()
	if want := "mihini: frame header cut short after 3 of 4 bytes: unexpected EOF"; err == nil || err.Error() != want {
		t.Errorf("truncated header: %v, want %s", err, want)
	}
	r = NewReader(strings.NewReader(unhex("00 05 03 01")))
	_, err = r.ReadFrame()
	if want := "mihini: payload of DATA for client 1 cut short after 0 of 5 bytes: unexpected EOF"; err == nil || err.Error() != want {
		t.Errorf("DATA without payload: %v, want %s", err, want)
	}
}

// scriptedReader returns its steps one Read at a time.
type scriptedReader []struct {
	data string
	err  error
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	step := (*s)[0]
	*s = (*s)[1:]
	return copy(p, step.data), step.err
}

var errTimeout = errors.New("timeout")

func TestReadFrameErrorBetweenFramesIsNotSticky(t *testing.T) {
	r := NewReader(&scriptedReader{
		{data: golden[3].wire},
		{err: errTimeout},
		{data: golden[4].wire},
	})
	for i, want := range []error{nil, errTimeout, nil, io.EOF} {
		if _, err := r.ReadFrame(); err != want {
			t.Fatalf("ReadFrame #%d: %v, want %v", i, err, want)
		}
	}
}

func TestReadFrameErrorInsideFrameIsSticky(t *testing.T) {
	for name, steps := range map[string]scriptedReader{
		"header":  {{data: "\x00\x05"}, {err: errTimeout}, {data: "\x03\x01hello"}},
		"payload": {{data: "\x00\x05\x03\x01he"}, {err: errTimeout}, {data: "llo"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(&steps)
			_, err := r.ReadFrame()
			if !errors.Is(err, errTimeout) || !strings.Contains(err.Error(), "cut short") {
				t.Fatalf("ReadFrame: %v, want a cut-short error wrapping the timeout", err)
			}
			if _, again := r.ReadFrame(); again != err {
				t.Errorf("ReadFrame after the error: %v, want the same error", again)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var want []Frame
	var stream []byte
	for range 500 {
		f := randomFrame(rng)
		var err error
		if stream, err = AppendFrame(stream, f); err != nil {
			t.Fatalf("AppendFrame(%v): %v", f, err)
		}
		want = append(want, f)
	}
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)))
	for i, w := range want {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if diff := frameDiff(w, got); diff != "" {
			t.Fatalf("frame %d (-want +got):\n%s", i, diff)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func randomFrame(rng *rand.Rand) Frame {
	client := uint8(rng.UintN(256))
	switch rng.IntN(4) {
	case 0:
		host := strings.Repeat("h", 1+rng.IntN(300))
		p, err := AppendConnect(nil, host, uint16(rng.UintN(65536)))
		if err != nil {
			panic(err)
		}
		return Frame{Command: Connect, Client: client, Payload: p}
	case 1:
		return Frame{Command: Close, Client: client}
	case 2:
		return Frame{Command: Listen}
	}
	n := rng.IntN(300)
	if rng.IntN(10) == 0 {
		n = rng.IntN(MaxPayload + 1)
	}
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.UintN(256))
	}
	return Frame{Command: Data, Client: client, Payload: p}
}

func TestReadFrameDoesNotAllocate(t *testing.T) {
	frame, _ := AppendFrame(nil, Frame{Command: Data, Client: 1, Payload: make([]byte, 1000)})
	r := NewReader(&loopReader{data: frame})
	if _, err := r.ReadFrame(); err != nil { // the payload buffer is allocated once
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadFrame allocates %v times per DATA frame, want 0", allocs)
	}
}

// loopReader repeats data forever; data must hold whole frames.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{Connect.String(), "CONNECT"},
		{Close.String(), "CLOSE"},
		{Data.String(), "DATA"},
		{Listen.String(), "LISTEN"},
		{Command(0).String(), "Command(0)"},
		{Command(200).String(), "Command(200)"},
		{Frame{Command: Listen}.String(), "LISTEN"},
		{Frame{Command: Data, Client: 3, Payload: []byte("hello")}.String(), "DATA client 3 (5 bytes)"},
		{Frame{Command: Close, Client: 0}.String(), "CLOSE client 0 (0 bytes)"},
		{Frame{Command: 9, Client: 1}.String(), "Command(9) client 1 (0 bytes)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func BenchmarkAppendFrameData(b *testing.B) {
	for _, size := range []int{64, 1024, MaxPayload} {
		b.Run(sizeName(size), func(b *testing.B) {
			f := Frame{Command: Data, Client: 1, Payload: make([]byte, size)}
			dst := make([]byte, 0, HeaderLen+size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = AppendFrame(dst[:0], f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadFrameData(b *testing.B) {
	for _, size := range []int{64, 1024, MaxPayload} {
		b.Run(sizeName(size), func(b *testing.B) {
			frame, err := AppendFrame(nil, Frame{Command: Data, Client: 1, Payload: make([]byte, size)})
			if err != nil {
				b.Fatal(err)
			}
			r := NewReader(&loopReader{data: bytes.Repeat(frame, 16)})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sizeName(n int) string {
	if n == MaxPayload {
		return "max"
	}
	return strconv.Itoa(n) + "B"
}
