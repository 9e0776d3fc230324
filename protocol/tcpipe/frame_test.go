package tcpipe

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

var maxData = bytes.Repeat([]byte{0x5a}, MaxData)

// golden holds one frame of every kind with its exact bytes on the wire.
// Port 40000 is 0x9c40, on the wire 40 9c.
var golden = []struct {
	name  string
	frame Frame
	wire  string
}{
	{"connect", Frame{Kind: Connect, Port: 40000}, unhex("00 00 00 15 00 00 00 04 01 00 40 9c")},
	{"data to the accepted connection", Frame{Kind: Data, Local: true, Port: 40000, Data: []byte("hello")},
		unhex("00 00 00 15 00 00 00 09 00 01 40 9c") + "hello"},
	{"data to the made connection", Frame{Kind: Data, Local: false, Port: 23, Data: []byte("abc")},
		unhex("00 00 00 15 00 00 00 07 00 00 17 00") + "abc"},
	{"data empty", Frame{Kind: Data, Port: 1}, unhex("00 00 00 15 00 00 00 04 00 00 01 00")},
	{"data max", Frame{Kind: Data, Local: true, Port: 65535, Data: maxData},
		unhex("00 00 00 15 00 00 04 04 00 01 ff ff") + string(maxData)},
	{"disconnect of a failed connect", Frame{Kind: Disconnect, Local: true, Port: 40001},
		unhex("00 00 00 15 00 00 00 04 02 01 41 9c")},
	{"disconnect remote", Frame{Kind: Disconnect, Port: 0x0102}, unhex("00 00 00 15 00 00 00 04 02 00 02 01")},
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
	if a.Kind == b.Kind && a.Local == b.Local && a.Port == b.Port && bytes.Equal(a.Data, b.Data) {
		return ""
	}
	return cmp.Diff(a, b, cmpopts.EquateEmpty())
}

// head shortens a long slice for a failure message.
func head(b []byte) []byte { return b[:min(len(b), 32)] }

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
	if p, err := br.Peek(4); err != nil || string(p) != unhex("00 00 00 15") {
		t.Fatalf("Peek = % x, %v", p, err)
	}
	got, err := NewReader(br).ReadFrame()
	if err != nil || got.Kind != Connect {
		t.Fatalf("ReadFrame after Peek = %v, %v; want Connect", got, err)
	}
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
		{"data too large", Frame{Kind: Data, Port: 80, Data: make([]byte, MaxData+1)},
			"tcpipe: Data for port 80 carries 1025 data bytes, more than the 1024 a frame carries; split it"},
		{"unknown kind", Frame{Kind: 3, Port: 80},
			"tcpipe: unknown kind 3 for port 80 (want Data 0, Connect 1 or Disconnect 2)"},
		{"connect local", Frame{Kind: Connect, Local: true, Port: 80},
			"tcpipe: Connect for port 80 has the local flag set; a Connect is never local"},
		{"connect with data", Frame{Kind: Connect, Port: 80, Data: []byte("x")},
			"tcpipe: Connect for port 80 carries 1 data bytes; only Data carries data"},
		{"disconnect with data", Frame{Kind: Disconnect, Local: true, Port: 80, Data: []byte("xy")},
			"tcpipe: Disconnect for port 80 carries 2 data bytes; only Data carries data"},
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
		name  string
		wire  string
		frame Frame
		want  string
	}{
		{"kind 3", unhex("00 00 00 15 00 00 00 04 03 00 50 00"), Frame{Kind: 3, Port: 80},
			"tcpipe: unknown kind 3 for port 80 (want Data 0, Connect 1 or Disconnect 2)"},
		{"kind 255 with data", unhex("00 00 00 15 00 00 00 05 ff 01 50 00 aa"), Frame{Kind: 255, Local: true, Port: 80, Data: []byte{0xaa}},
			"tcpipe: unknown kind 255 for port 80"},
		{"local flag 2", unhex("00 00 00 15 00 00 00 05 00 02 50 00 aa"), Frame{Kind: Data, Local: true, Port: 80, Data: []byte{0xaa}},
			"tcpipe: Data for port 80 has local flag 2, want 0 or 1"},
		{"connect local", unhex("00 00 00 15 00 00 00 04 01 01 50 00"), Frame{Kind: Connect, Local: true, Port: 80},
			"tcpipe: Connect for port 80 has the local flag set; a Connect is never local"},
		{"connect with data", unhex("00 00 00 15 00 00 00 06 01 00 50 00 aa bb"), Frame{Kind: Connect, Port: 80, Data: []byte{0xaa, 0xbb}},
			"tcpipe: Connect for port 80 carries 2 data bytes; only Data carries data"},
		{"disconnect with data", unhex("00 00 00 15 00 00 00 05 02 01 50 00 aa"), Frame{Kind: Disconnect, Local: true, Port: 80, Data: []byte{0xaa}},
			"tcpipe: Disconnect for port 80 carries 1 data bytes; only Data carries data"},
	}
	next := golden[1]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.wire + next.wire))
			f, err := r.ReadFrame()
			checkErr(t, err, ErrInvalidFrame, tt.want)
			if diff := frameDiff(tt.frame, f); diff != "" {
				t.Errorf("frame returned with the error (-want +got):\n%s", diff)
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

func TestReadFrameCorrupt(t *testing.T) {
	// A link header that cannot be right loses the link: the error wraps
	// ErrCorrupt and stays.
	tests := []struct {
		name string
		wire string
		want string
	}{
		{"magic 0", unhex("00 00 00 00 00 00 00 04 01 00 50 00"),
			"tcpipe: link header has magic 0x00000000, want 0x00000015 (21): the peer is not a tcpipe partner or the link is out of step; close it"},
		{"little-endian magic", unhex("15 00 00 00 04 00 00 00 01 00 50 00"),
			"tcpipe: link header has magic 0x15000000, want 0x00000015 (21)"},
		{"text", "GET / HTTP/1.1\r\n\r\n", "tcpipe: link header has magic 0x47455420, want 0x00000015 (21)"},
		{"size 0", unhex("00 00 00 15 00 00 00 00"),
			"tcpipe: link header has body size 0, want 4 to 1028 (4-byte message header and at most 1024 data bytes): the link is out of step; close it"},
		{"size 3", unhex("00 00 00 15 00 00 00 03 01 00 50"), "tcpipe: link header has body size 3, want 4 to 1028"},
		{"size 1029", unhex("00 00 00 15 00 00 04 05") + string(make([]byte, 1029)), "tcpipe: link header has body size 1029, want 4 to 1028"},
		{"size max", unhex("00 00 00 15 ff ff ff ff"), "tcpipe: link header has body size 4294967295, want 4 to 1028"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.wire + golden[0].wire))
			f, err := r.ReadFrame()
			checkErr(t, err, ErrCorrupt, tt.want)
			if errors.Is(err, ErrInvalidFrame) {
				t.Errorf("error %v also matches ErrInvalidFrame", err)
			}
			if diff := frameDiff(Frame{}, f); diff != "" {
				t.Errorf("frame returned with a corrupt header (-want +got):\n%s", diff)
			}
			if _, again := r.ReadFrame(); again != err {
				t.Errorf("ReadFrame after the corrupt header: %v, want the same error", again)
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	// Cut the transcript at every length: io.EOF only at a frame boundary,
	// io.ErrUnexpectedEOF inside a frame, and that error stays.
	stream := transcript()
	boundary := map[int]bool{0: true}
	end := 0
	for _, g := range golden {
		end += len(g.wire)
		boundary[end] = true
	}
	for cut := range len(stream) {
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
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "tcpipe: ") {
			t.Fatalf("cut at %d (inside a frame): %v, want a tcpipe error wrapping io.ErrUnexpectedEOF", cut, err)
		}
		if _, again := r.ReadFrame(); again != err {
			t.Fatalf("cut at %d: second ReadFrame returned %v, want the same %v", cut, again, err)
		}
	}
	for _, tt := range []struct{ wire, want string }{
		{unhex("00 00 00 15 00 00 00 09 00 01 40 9c") + "he",
			"tcpipe: body cut short after 6 of 9 bytes: unexpected EOF"},
		{unhex("00 00 00 15 00 00 00 09"), "tcpipe: body cut short after 0 of 9 bytes: unexpected EOF"},
		{unhex("00 00 00 15 00"), "tcpipe: link header cut short after 5 of 8 bytes: unexpected EOF"},
	} {
		_, err := NewReader(strings.NewReader(tt.wire)).ReadFrame()
		if err == nil || err.Error() != tt.want {
			t.Errorf("ReadFrame(% x): %v, want %s", tt.wire, err, tt.want)
		}
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
		{data: golden[0].wire},
		{err: errTimeout},
		{data: golden[1].wire},
	})
	for i, want := range []error{nil, errTimeout, nil, io.EOF} {
		if _, err := r.ReadFrame(); err != want {
			t.Fatalf("ReadFrame #%d: %v, want %v", i, err, want)
		}
	}
}

func TestReadFrameErrorInsideFrameIsSticky(t *testing.T) {
	wire := golden[1].wire
	for name, steps := range map[string]scriptedReader{
		"header": {{data: wire[:3]}, {err: errTimeout}, {data: wire[3:]}},
		"body":   {{data: wire[:10]}, {err: errTimeout}, {data: wire[10:]}},
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
	rng := rand.New(rand.NewPCG(3, 4))
	var want []Frame
	var stream []byte
	for range 2000 {
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
	f := Frame{Kind: Kind(rng.IntN(3)), Local: rng.IntN(2) == 1, Port: uint16(rng.UintN(65536))}
	switch f.Kind {
	case Connect:
		f.Local = false
	case Data:
		f.Data = make([]byte, rng.IntN(MaxData+1))
		for i := range f.Data {
			f.Data[i] = byte(rng.UintN(256))
		}
	}
	return f
}

func TestReadFrameDoesNotAllocate(t *testing.T) {
	frame, _ := AppendFrame(nil, Frame{Kind: Data, Port: 80, Data: make([]byte, MaxData)})
	r := NewReader(&loopReader{data: frame})
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadFrame allocates %v times per Data frame, want 0", allocs)
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
		{Data.String(), "Data"},
		{Connect.String(), "Connect"},
		{Disconnect.String(), "Disconnect"},
		{Kind(3).String(), "Kind(3)"},
		{Frame{Kind: Connect, Port: 40000}.String(), "Connect port 40000 remote (0 bytes)"},
		{Frame{Kind: Data, Local: true, Port: 80, Data: []byte("hello")}.String(), "Data port 80 local (5 bytes)"},
		{Frame{Kind: 9, Port: 1}.String(), "Kind(9) port 1 remote (0 bytes)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func BenchmarkAppendFrameData(b *testing.B) {
	for _, size := range []int{64, MaxData} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			f := Frame{Kind: Data, Port: 80, Data: make([]byte, size)}
			dst := make([]byte, 0, HeaderLen+bodyHeaderLen+size)
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
	for _, size := range []int{64, MaxData} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			frame, err := AppendFrame(nil, Frame{Kind: Data, Port: 80, Data: make([]byte, size)})
			if err != nil {
				b.Fatal(err)
			}
			r := NewReader(&loopReader{data: bytes.Repeat(frame, 64)})
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
