package cccp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// readSerial runs ReadSerial over input and returns the serial, the error
// and every byte left for the caller afterwards.
func readSerial(t testing.TB, input io.Reader, size int) (string, error, []byte) {
	t.Helper()
	br := bufio.NewReaderSize(input, size)
	serial, err := ReadSerial(br)
	rest, restErr := io.ReadAll(br)
	if restErr != nil && err == nil {
		t.Fatalf("reading the rest after ReadSerial: %v", restErr)
	}
	return serial, err, rest
}

func TestReadSerial(t *testing.T) {
	long := strings.Repeat("S", MaxSerialLen)
	tests := []struct {
		name, input, serial, rest string
	}{
		{"seed example", "CLD-123456\r", "CLD-123456", ""},
		{"CRLF", "CLD-123456\r\n", "CLD-123456", ""},
		{"data after CR", "CLD-123456\r\x00\x01\xffhello", "CLD-123456", "\x00\x01\xffhello"},
		{"data after CRLF", "CLD-123456\r\nhello\r\n", "CLD-123456", "hello\r\n"},
		{"only one LF is the line's", "CLD-1\r\n\nx", "CLD-1", "\nx"},
		{"second line is data", "CLD-1\rCLD-2\r", "CLD-1", "CLD-2\r"},
		{"longest serial", long + "\rdata", long, "data"},
		{"UTF-8 and spaces", "Gerät 7 ✓\r", "Gerät 7 ✓", ""},
		{"one byte", "x\r", "x", ""},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				serial, err, rest := readSerial(t, strings.NewReader(tt.input), size)
				if err != nil {
					t.Fatalf("ReadSerial(%q) = %v", tt.input, err)
				}
				if serial != tt.serial || string(rest) != tt.rest {
					t.Errorf("ReadSerial(%q) = %q, rest %q; want %q, rest %q",
						tt.input, serial, rest, tt.serial, tt.rest)
				}
			})
		}
	}
}

// A LF that has not arrived with the CR is left as data: waiting for it
// would stall a device that sends only CR and then waits for its client.
func TestReadSerialDoesNotWaitForLF(t *testing.T) {
	serial, err, rest := readSerial(t, iotest.OneByteReader(strings.NewReader("CLD-1\r\nabc")), 16)
	if err != nil || serial != "CLD-1" || string(rest) != "\nabc" {
		t.Errorf("got %q, %v, rest %q; want \"CLD-1\", nil, rest \"\\nabc\"", serial, err, rest)
	}

	// The reader must not be asked for more than the line: a blocking
	// connection would hang here.
	br := bufio.NewReader(&stopAfter{data: []byte("CLD-1\r")})
	if serial, err := ReadSerial(br); err != nil || serial != "CLD-1" {
		t.Errorf("got %q, %v; want \"CLD-1\", nil", serial, err)
	}
}

// stopAfter returns data once, then an error that ReadSerial must never
// see, standing in for a connection that blocks.
type stopAfter struct {
	data []byte
	done bool
}

var errReadTooFar = errors.New("read past the registration line")

func (s *stopAfter) Read(p []byte) (int, error) {
	if s.done {
		return 0, errReadTooFar
	}
	s.done = true
	return copy(p, s.data), nil
}

func TestReadSerialBad(t *testing.T) {
	tests := []struct {
		name, input string
		want        error
		in          string // in the message
	}{
		{"nothing", "", io.EOF, ""},
		{"no CR", "CLD-123", io.ErrUnexpectedEOF, `"CLD-123"`},
		{"only CR", "\r", ErrEmptySerial, "empty"},
		{"only CRLF", "\r\ndata", ErrEmptySerial, "empty"},
		{"LF instead of CR", "CLD-123\n", ErrBadSerial, `\n (LF)`},
		{"LF then CR", "CLD\n123\r", ErrBadSerial, "LF"},
		{"NUL", "CLD\x00123\r", ErrBadSerial, "U+0000 at byte 3"},
		{"tab", "CLD\t1\r", ErrBadSerial, "U+0009"},
		{"DEL", "CLD\x7f\r", ErrBadSerial, "U+007F"},
		{"C1 control", "CLD\u0085\r", ErrBadSerial, "U+0085"},
		{"invalid UTF-8", "CLD\xff\r", ErrBadSerial, "UTF-8"},
		{"too long", strings.Repeat("S", MaxSerialLen+1) + "\r", ErrSerialTooLong, "128"},
		{"no CR for ever", strings.Repeat("S", 10000), ErrSerialTooLong, "128"},
		{"binary garbage", "\x16\x03\x01\x02\x00", ErrBadSerial, "U+0016"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serial, err, _ := readSerial(t, strings.NewReader(tt.input), 16)
			if !errors.Is(err, tt.want) || serial != "" {
				t.Fatalf("ReadSerial(%.40q) = %q, %v; want error %v", tt.input, serial, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not contain %q", err, tt.in)
			}
		})
	}
}

func TestReadSerialStopsEarly(t *testing.T) {
	r := strings.NewReader(strings.Repeat("S", 1<<20))
	br := bufio.NewReaderSize(r, 16)
	if _, err := ReadSerial(br); !errors.Is(err, ErrSerialTooLong) {
		t.Fatalf("got %v, want ErrSerialTooLong", err)
	}
	if read := 1<<20 - r.Len(); read > MaxSerialLen+16 {
		t.Errorf("ReadSerial read %d bytes of an overlong line; want at most %d", read, MaxSerialLen+16)
	}
}

func TestReadSerialPassesReadErrors(t *testing.T) {
	r := io.MultiReader(strings.NewReader("CLD"), iotest.ErrReader(os.ErrDeadlineExceeded))
	if _, err := ReadSerial(bufio.NewReader(r)); err != os.ErrDeadlineExceeded {
		t.Errorf("got %v, want os.ErrDeadlineExceeded as it is", err)
	}
}

func TestWriteSerial(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSerial(&b, "CLD-123456"); err != nil || b.String() != "CLD-123456\r" {
		t.Fatalf("WriteSerial = %v, wrote %q; want nil, \"CLD-123456\\r\"", err, b.String())
	}
	for _, bad := range []string{"", "a\rb", "a\nb", strings.Repeat("x", MaxSerialLen+1), "\xff"} {
		b.Reset()
		if err := WriteSerial(&b, bad); err == nil || b.Len() != 0 {
			t.Errorf("WriteSerial(%.20q) = %v, wrote %q; want an error and nothing written", bad, err, b.String())
		}
	}
}

func FuzzReadSerial(f *testing.F) {
	for _, s := range []string{
		"CLD-123456\r", "CLD-123456\r\n", "CLD-123456\r\nhello", "CLD-1\r\n\n",
		"Gerät\r", "", "\r", "x\n", "a\x00\r", strings.Repeat("S", MaxSerialLen) + "\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		serial, err, rest := readSerial(t, bytes.NewReader(data), 16)
		if err != nil {
			if serial != "" {
				t.Fatalf("ReadSerial returned %q with error %v", serial, err)
			}
			for _, want := range []error{io.EOF, io.ErrUnexpectedEOF, ErrEmptySerial, ErrSerialTooLong, ErrBadSerial} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("ReadSerial returned an unexpected error: %v", err)
		}
		if err := CheckSerial(serial); err != nil {
			t.Fatalf("ReadSerial returned %q, which CheckSerial rejects: %v", serial, err)
		}
		var line bytes.Buffer
		if err := WriteSerial(&line, serial); err != nil {
			t.Fatalf("WriteSerial(%q) = %v", serial, err)
		}
		if !bytes.HasPrefix(data, line.Bytes()) {
			t.Fatalf("serial %q re-encodes to %q, which does not start %q", serial, line.Bytes(), data)
		}
		after := data[line.Len():]
		if !bytes.Equal(rest, after) && !(len(after) > 0 && after[0] == '\n' && bytes.Equal(rest, after[1:])) {
			t.Fatalf("after the line %q, the reader left %q; want %q (or without its leading LF)", line.Bytes(), rest, after)
		}
	})
}
