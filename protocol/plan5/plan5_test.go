package plan5

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// equal compares messages; a nil C and an empty C are the same payload.
var equal = cmpopts.EquateEmpty()

// golden are the exact bytes of each message type. Each is both what
// AppendMessage writes and what ReadMessage must decode.
var golden = []struct {
	name string
	msg  Message
	wire string
}{
	{"Aloha plain", &Aloha{V: 10000, R: RoleIS, N: "plain"},
		"0\n{\"V\":10000,\"R\":2,\"N\":\"plain\"}\n"},
	{"Aloha empty name", &Aloha{V: 10000, R: RoleIC},
		"0\n{\"V\":10000,\"R\":3,\"N\":\"\"}\n"},
	{"Aloha rtcp offer", &Aloha{V: 10000, R: RoleIS, N: "printer-7", Window: 262144, MaxLine: 65536, HalfClose: true, Owner: "3f2a"},
		"0\n{\"V\":10000,\"R\":2,\"N\":\"printer-7\",\"Window\":262144,\"MaxLine\":65536,\"HalfClose\":true,\"Owner\":\"3f2a\"}\n"},
	{"Aloha every key", &Aloha{V: 10000, R: RoleDP, N: "rtcp", HeartBeat: 15000, Window: 1, MaxLine: 1024, HalfClose: true, Owner: "o", Transport: "yamux", Error: "e"},
		"0\n{\"V\":10000,\"R\":4,\"N\":\"rtcp\",\"HeartBeat\":15000,\"Window\":1,\"MaxLine\":1024,\"HalfClose\":true,\"Owner\":\"o\",\"Transport\":\"yamux\",\"Error\":\"e\"}\n"},
	{"Aloha abort version", &Aloha{V: 10000, R: RoleAbortVersion, N: "rtcp", Error: "version 20000 is not compatible"},
		"0\n{\"V\":10000,\"R\":5,\"N\":\"rtcp\",\"Error\":\"version 20000 is not compatible\"}\n"},
	{"Aloha spares offered", &Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Transport: "tcp", Spares: 2},
		"0\n{\"V\":10000,\"R\":2,\"N\":\"printer-7\",\"Owner\":\"3f2a\",\"Transport\":\"tcp\",\"Spares\":2}\n"},
	{"Aloha spares granted", &Aloha{V: 10000, R: RoleDP, N: "rtcp", Transport: "tcp", Token: "9f1c", Spares: 2},
		"0\n{\"V\":10000,\"R\":4,\"N\":\"rtcp\",\"Transport\":\"tcp\",\"Token\":\"9f1c\",\"Spares\":2}\n"},
	{"Aloha spare data link", &Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Transport: "spare", Token: "9f1c"},
		"0\n{\"V\":10000,\"R\":2,\"N\":\"printer-7\",\"Owner\":\"3f2a\",\"Transport\":\"spare\",\"Token\":\"9f1c\"}\n"},
	{"Connect IC to DP", &Connect{N: "printer-7"},
		"1\n{\"N\":\"printer-7\"}\n"},
	{"Connect DP to IS", &Connect{N: "alice", Addr: "203.0.113.5:40112"},
		"1\n{\"N\":\"alice\",\"Addr\":\"203.0.113.5:40112\"}\n"},
	{"Ack", &Ack{X: 7},
		"2\n{\"X\":7}\n"},
	{"Ack refused", &Ack{X: -1, R: "rtcp: no server named \"x\" is registered at this DP"},
		"2\n{\"X\":-1,\"R\":\"rtcp: no server named \\\"x\\\" is registered at this DP\"}\n"},
	{"Data", &Data{X: 7, C: []byte{0, 1, 2, 255}},
		"3\n{\"X\":7,\"C\":\"AAEC/w==\"}\n"},
	{"Data one byte", &Data{X: 0, C: []byte("a")},
		"3\n{\"X\":0,\"C\":\"YQ==\"}\n"},
	{"Data empty", &Data{X: 7},
		"3\n{\"X\":7,\"C\":\"\"}\n"},
	{"Data credit only", &Data{X: 7, Window: 131072},
		"3\n{\"X\":7,\"Window\":131072}\n"},
	{"Data with credit", &Data{X: 9, C: []byte("hi"), Window: 5},
		"3\n{\"X\":9,\"C\":\"aGk=\",\"Window\":5}\n"},
	{"Data large X", &Data{X: math.MaxInt64, C: []byte("xyz")},
		"3\n{\"X\":9223372036854775807,\"C\":\"eHl6\"}\n"},
	{"Close", &Close{X: 7, R: "closed"},
		"4\n{\"X\":7,\"R\":\"closed\"}\n"},
	{"Close half", &Close{X: 7, Half: true},
		"4\n{\"X\":7,\"Half\":true}\n"},
	{"Close abort", &Close{X: 7, R: "rtcp: session receive buffer full", Abort: true},
		"4\n{\"X\":7,\"R\":\"rtcp: session receive buffer full\",\"Abort\":true}\n"},
	{"Close connection", &Close{X: -1, R: "rtcp: protocol error", Abort: true},
		"4\n{\"X\":-1,\"R\":\"rtcp: protocol error\",\"Abort\":true}\n"},
}

func TestGoldenEncode(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			if got := string(AppendMessage(nil, g.msg)); got != g.wire {
				t.Errorf("AppendMessage:\n got %q\nwant %q", got, g.wire)
			}
			// Appending keeps what dst held.
			if got := string(AppendMessage([]byte("prefix"), g.msg)); got != "prefix"+g.wire {
				t.Errorf("AppendMessage to a non-empty slice: %q", got)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			m, err := NewReader(strings.NewReader(g.wire), 0).ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(g.msg, m, equal); diff != "" {
				t.Errorf("ReadMessage(%q) (-want +got):\n%s", g.wire, diff)
			}
		})
	}
}

// TestGoldenStream decodes every golden message from one byte stream, the
// way they arrive when several share a TCP segment, and again through
// readers that return one byte or half a buffer at a time.
func TestGoldenStream(t *testing.T) {
	var all bytes.Buffer
	for _, g := range golden {
		all.WriteString(g.wire)
	}
	readers := map[string]func(io.Reader) io.Reader{
		"one read":    func(r io.Reader) io.Reader { return r },
		"byte a time": iotest.OneByteReader,
		"half reads":  iotest.HalfReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			r := NewReader(wrap(bytes.NewReader(all.Bytes())), 0)
			for _, g := range golden {
				m, err := r.ReadMessage()
				if err != nil {
					t.Fatalf("%s: %v", g.name, err)
				}
				if diff := cmp.Diff(g.msg, m, equal); diff != "" {
					t.Fatalf("%s (-want +got):\n%s", g.name, diff)
				}
			}
			if m, err := r.ReadMessage(); err != io.EOF {
				t.Fatalf("after the last message: %v, %v; want io.EOF", m, err)
			}
		})
	}
}

// TestDecodeLenient: what a receiver accepts beyond the exact form rtcp
// writes. Unknown keys are where extensions live; key order and
// whitespace are JSON's freedom (they take the encoding/json path).
func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Message
	}{
		{"unknown keys in Data", "3\n{\"X\":7,\"C\":\"AAEC/w==\",\"Future\":{\"a\":[1,2,null]},\"Z\":\"z\"}\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"unknown key first", "3\n{\"Q\":1,\"X\":7,\"C\":\"AAEC/w==\"}\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"unknown keys in Aloha", "0\n{\"V\":10001,\"R\":2,\"N\":\"x\",\"Color\":\"red\",\"HeartBeat\":0}\n", &Aloha{V: 10001, R: RoleIS, N: "x"}},
		{"unknown keys in Connect", "1\n{\"N\":\"x\",\"Future\":\"t\"}\n", &Connect{N: "x"}},
		{"unknown keys in Ack", "2\n{\"X\":3,\"R\":\"\",\"When\":1}\n", &Ack{X: 3}},
		{"unknown keys in Close", "4\n{\"X\":3,\"R\":\"bye\",\"Linger\":true}\n", &Close{X: 3, R: "bye"}},
		{"Data keys reversed", "3\n{\"C\":\"AAEC/w==\",\"X\":7}\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"Aloha keys reversed", "0\n{\"N\":\"x\",\"R\":3,\"V\":10000}\n", &Aloha{V: 10000, R: RoleIC, N: "x"}},
		{"Ack keys reversed", "2\n{\"R\":\"no\",\"X\":-1}\n", &Ack{X: -1, R: "no"}},
		{"Data with spaces", "3\n{ \"X\" : 7 , \"C\" : \"AAEC/w==\" }\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"Data with tabs", "3\n{\t\"X\":7,\t\"C\":\"AAEC/w==\"}\t\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"Aloha with spaces", "0\n{\"V\": 10000, \"R\": 2, \"N\": \"plain\"}\n", &Aloha{V: 10000, R: RoleIS, N: "plain"}},
		{"Data escaped slash", "3\n{\"X\":7,\"C\":\"AAEC\\/w==\"}\n", &Data{X: 7, C: []byte{0, 1, 2, 255}}},
		{"Data C null", "3\n{\"X\":7,\"C\":null}\n", &Data{X: 7}},
		{"Data C missing", "3\n{\"X\":7}\n", &Data{X: 7}},
		{"Data negative zero", "3\n{\"X\":-0,\"C\":\"\"}\n", &Data{X: 0}},
		{"Ack without R", "2\n{\"X\":0}\n", &Ack{X: 0}},
		{"Close without R", "4\n{\"X\":1}\n", &Close{X: 1}},
		{"empty object", "1\n{}\n", &Connect{}},
		{"Connect with unicode escape", "1\n{\"N\":\"caf\\u00e9\"}\n", &Connect{N: "café"}},
		// encoding/json matches keys without regard to case: a receiver
		// takes "x" for "X". Senders must still write capital keys.
		{"lower-case keys", "2\n{\"x\":4,\"r\":\"\"}\n", &Ack{X: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewReader(strings.NewReader(tt.wire), 0).ReadMessage()
			if err != nil {
				t.Fatalf("ReadMessage(%q): %v", tt.wire, err)
			}
			if diff := cmp.Diff(tt.want, m, equal); diff != "" {
				t.Errorf("ReadMessage(%q) (-want +got):\n%s", tt.wire, diff)
			}
		})
	}
}

// TestDecodeErrors: each kind of bad input gets the error that names it.
// Every one of them ends the connection (the caller closes it).
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		wire    string
		maxLine int
		want    error
		text    string // in the error's text
	}{
		{"nothing", "", 0, io.EOF, "EOF"},
		{"type line without newline", "3", 0, io.ErrUnexpectedEOF, ""},
		{"type line only", "3\n", 0, io.ErrUnexpectedEOF, ""},
		{"body cut short", "3\n{\"X\":7,\"C\":\"AA", 0, io.ErrUnexpectedEOF, ""},
		{"body without newline", "2\n{\"X\":7}", 0, io.ErrUnexpectedEOF, ""},

		{"type 5", "5\n{}\n", 0, ErrBadType, `"5"`},
		{"type 9", "9\n{}\n", 0, ErrBadType, `"9"`},
		{"type letter", "a\n{}\n", 0, ErrBadType, `"a"`},
		{"type two digits", "33\n{}\n", 0, ErrBadType, `"33"`},
		{"type CR LF", "3\r\n{\"X\":7,\"C\":\"\"}\n", 0, ErrBadType, `"3\r"`},
		{"type empty", "\n{}\n", 0, ErrBadType, `""`},
		{"type long line", "3000000\n{}\n", 0, ErrBadType, "one digit"},
		{"JSON on the type line", "{\"X\":7}\n", 0, ErrBadType, "one digit"},

		{"not JSON", "3\nhello\n", 0, ErrBadJSON, "not a JSON object"},
		{"JSON array", "3\n[1,2]\n", 0, ErrBadJSON, "not a JSON object"},
		{"JSON null", "0\nnull\n", 0, ErrBadJSON, "not a JSON object"},
		{"empty body", "3\n\n", 0, ErrBadJSON, "in Data"},
		{"space before object", "2\n {\"X\":1}\n", 0, ErrBadJSON, "not a JSON object"},
		{"unterminated object", "2\n{\"X\":1\n", 0, ErrBadJSON, "in Ack"},
		{"trailing garbage", "2\n{\"X\":1} x\n", 0, ErrBadJSON, "in Ack"},
		{"two objects", "2\n{\"X\":1}{\"X\":2}\n", 0, ErrBadJSON, "in Ack"},
		{"X is a string", "3\n{\"X\":\"7\",\"C\":\"\"}\n", 0, ErrBadJSON, "in Data"},
		{"X is a float", "2\n{\"X\":1.5}\n", 0, ErrBadJSON, "in Ack"},
		{"X overflows", "2\n{\"X\":9223372036854775808}\n", 0, ErrBadJSON, "in Ack"},
		{"X with leading zero", "3\n{\"X\":07,\"C\":\"\"}\n", 0, ErrBadJSON, "in Data"},
		{"X with plus", "3\n{\"X\":+7,\"C\":\"\"}\n", 0, ErrBadJSON, "in Data"},
		{"C is a number", "3\n{\"X\":7,\"C\":12}\n", 0, ErrBadJSON, "in Data"},
		{"C not base64", "3\n{\"X\":7,\"C\":\"not base64!\"}\n", 0, ErrBadJSON, "in Data"},
		{"C unpadded", "3\n{\"X\":7,\"C\":\"AAEC/w\"}\n", 0, ErrBadJSON, "in Data"},
		{"C URL alphabet", "3\n{\"X\":7,\"C\":\"AAEC_w==\"}\n", 0, ErrBadJSON, "in Data"},
		{"C with raw CR", "3\n{\"X\":7,\"C\":\"AAEC\r/w==\"}\n", 0, ErrBadJSON, "in Data"},
		{"Window is a string", "3\n{\"X\":7,\"Window\":\"5\"}\n", 0, ErrBadJSON, "in Data"},
		{"V is a string", "0\n{\"V\":\"10000\",\"R\":2,\"N\":\"x\"}\n", 0, ErrBadJSON, "in Aloha"},
		{"R is a string", "0\n{\"V\":10000,\"R\":\"IS\",\"N\":\"x\"}\n", 0, ErrBadJSON, "in Aloha"},
		{"N is a number", "1\n{\"N\":7}\n", 0, ErrBadJSON, "in Connect"},
		{"HalfClose is a string", "0\n{\"V\":10000,\"HalfClose\":\"yes\"}\n", 0, ErrBadJSON, "in Aloha"},
		{"Half is a number", "4\n{\"X\":1,\"Half\":1}\n", 0, ErrBadJSON, "in Close"},
		{"R of Close is an object", "4\n{\"X\":1,\"R\":{}}\n", 0, ErrBadJSON, "in Close"},

		{"line over the cap", "3\n{\"X\":7,\"C\":\"" + strings.Repeat("A", 1100) + "\"}\n", 1024, ErrLineTooLong, "the limit is 1024"},
		{"line over the buffer and the cap", "3\n{\"X\":7,\"C\":\"" + strings.Repeat("A", 10000) + "\"}\n", 8192, ErrLineTooLong, "the limit is 8192"},
		{"endless line", "3\n" + strings.Repeat("A", 200000), 0, ErrLineTooLong, "without a newline"},
		{"plain cap", "1\n{\"N\":\"" + strings.Repeat("n", PlainMaxLine) + "\"}\n", PlainMaxLine, ErrLineTooLong, "the limit is 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewReader(strings.NewReader(tt.wire), tt.maxLine).ReadMessage()
			if err == nil {
				t.Fatalf("ReadMessage(%.60q) = %#v, want error %v", tt.wire, m, tt.want)
			}
			if tt.want == io.EOF || tt.want == io.ErrUnexpectedEOF {
				if err != tt.want {
					t.Fatalf("error %v, want %v itself", err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %q, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
			if !strings.HasPrefix(err.Error(), "plan5: ") {
				t.Errorf("error %q does not name the protocol", err)
			}
		})
	}
}

// TestLineCap: a line of exactly maxLine bytes passes, one more fails,
// whether or not the line fits in the reader's buffer.
func TestLineCap(t *testing.T) {
	for _, maxLine := range []int{MinMaxLine, PlainMaxLine - 1, PlainMaxLine, PlainMaxLine + 1, 10000, DefaultMaxLine} {
		body := func(n int) string {
			const pre, post = `{"N":"`, `"}`
			return "1\n" + pre + strings.Repeat("n", n-len(pre)-len(post)) + post + "\n"
		}
		if _, err := NewReader(strings.NewReader(body(maxLine)), maxLine).ReadMessage(); err != nil {
			t.Errorf("maxLine %d: a line of exactly %d bytes: %v", maxLine, maxLine, err)
		}
		if _, err := NewReader(strings.NewReader(body(maxLine+1)), maxLine).ReadMessage(); !errors.Is(err, ErrLineTooLong) {
			t.Errorf("maxLine %d: a line of %d bytes: %v, want ErrLineTooLong", maxLine, maxLine+1, err)
		}
	}
	// After a long line, the reader goes on with the next message.
	long := "1\n{\"N\":\"" + strings.Repeat("n", 20000) + "\"}\n"
	r := NewReader(strings.NewReader(long+"2\n{\"X\":1}\n"), DefaultMaxLine)
	if m, err := r.ReadMessage(); err != nil || len(m.(*Connect).N) != 20000 {
		t.Fatalf("long line: %v", err)
	}
	if m, err := r.ReadMessage(); err != nil || m.(*Ack).X != 1 {
		t.Fatalf("message after a long line: %v, %v", m, err)
	}
}

// TestChunkSize: a Data of ChunkSize(maxLine) bytes, with the longest X,
// fits in maxLine, and the plain peer's figure is the one SPEC.md gives.
func TestChunkSize(t *testing.T) {
	if got := ChunkSize(PlainMaxLine); got != 3045 {
		t.Errorf("ChunkSize(PlainMaxLine) = %d, want 3045 (SPEC.md)", got)
	}
	if got := ChunkSize(DefaultMaxLine); got != 49125 {
		t.Errorf("ChunkSize(DefaultMaxLine) = %d, want 49125 (SPEC.md)", got)
	}
	for _, maxLine := range []int{MinMaxLine, 1025, 1026, 1027, PlainMaxLine, 10001, DefaultMaxLine} {
		n := ChunkSize(maxLine)
		wire := AppendMessage(nil, &Data{X: math.MinInt64, C: make([]byte, n)})
		line := len(wire) - 2 - 1 // type line and the body's newline
		if line > maxLine {
			t.Errorf("ChunkSize(%d) = %d gives a line of %d bytes", maxLine, n, line)
		}
		if _, err := NewReader(bytes.NewReader(wire), maxLine).ReadMessage(); err != nil {
			t.Errorf("ChunkSize(%d): a full chunk does not decode: %v", maxLine, err)
		}
		if maxLine-line >= 4 {
			t.Errorf("ChunkSize(%d) = %d leaves %d bytes of the line unused", maxLine, n, maxLine-line)
		}
	}
	if ChunkSize(10) != 1 {
		t.Errorf("ChunkSize of a tiny line = %d, want 1", ChunkSize(10))
	}
}

func TestRoundTrip(t *testing.T) {
	big := make([]byte, ChunkSize(DefaultMaxLine))
	for i := range big {
		big[i] = byte(i * 7)
	}
	msgs := []Message{
		&Aloha{V: Version, R: RoleDS},
		&Aloha{V: 19999, R: RoleDC, N: "日本語 \"quoted\" <tag> & \\ \u2028", HeartBeat: 1, Window: math.MaxInt32, MaxLine: MinMaxLine, HalfClose: true, Owner: "\x00\x1f", Transport: "raw", Error: "\n"},
		&Connect{N: strings.Repeat("x", 1000), Addr: "[::1]:80"},
		&Ack{X: math.MinInt64},
		&Ack{X: -1, R: "no"},
		&Data{X: 1, C: big},
		&Data{X: 2, C: big[:1]},
		&Data{X: 3, C: big[:2]},
		&Data{X: -5, C: big[:3]},
		&Data{X: 4, Window: -1},
		&Data{X: 4, C: big[:100], Window: math.MaxInt32},
		&Close{X: 1, R: "r", Half: true, Abort: true},
	}
	var wire []byte
	for _, m := range msgs {
		wire = AppendMessage(wire, m)
	}
	r := NewReader(bytes.NewReader(wire), 0)
	for i, want := range msgs {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d (%v): %v", i, want.Type(), err)
		}
		if diff := cmp.Diff(want, got, equal); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i, diff)
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

// TestReaderBuffered: bytes after the last message read stay in the
// reader's buffer for a caller that switches transport.
func TestReaderBuffered(t *testing.T) {
	wire := AppendMessage(nil, &Aloha{V: Version, R: RoleDP, Transport: "yamux"})
	wire = append(wire, "raw bytes"...)
	r := NewReader(bytes.NewReader(wire), 0)
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r.Buffered())
	if string(rest) != "raw bytes" {
		t.Fatalf("after the Aloha the buffer holds %q", rest)
	}
	// A *bufio.Reader given to NewReader is used as it is.
	br := bufio.NewReader(strings.NewReader("2\n{\"X\":1}\n"))
	if NewReader(br, 0).Buffered() != br {
		t.Error("NewReader did not keep the *bufio.Reader it was given")
	}
}

func TestCompatible(t *testing.T) {
	for v, want := range map[int]bool{
		Version: true, 10001: true, 19999: true, LegacyVersion: true,
		112: false, 114: false, 0: false, -10000: false, 9999: false, 20000: false, math.MaxInt: false,
	} {
		if Compatible(v) != want {
			t.Errorf("Compatible(%d) = %v, want %v", v, !want, want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{TypeAloha.String(), "Aloha"}, {TypeConnect.String(), "Connect"}, {TypeAck.String(), "Ack"},
		{TypeData.String(), "Data"}, {TypeClose.String(), "Close"}, {Type(9).String(), "Type(9)"},
		{RoleDS.String(), "DS"}, {RoleDC.String(), "DC"}, {RoleIS.String(), "IS"}, {RoleIC.String(), "IC"},
		{RoleDP.String(), "DP"}, {RoleAbortVersion.String(), "AbortVersion"}, {Role(-1).String(), "Role(-1)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
