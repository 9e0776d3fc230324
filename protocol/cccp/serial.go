package cccp

import (
	"bufio"
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// MaxSerialLen is the longest serial, in bytes, that a device may register
// with. The CCCP documentation sets no limit; this one bounds what a proxy
// buffers for a connection that has not registered yet.
const MaxSerialLen = 128

// ReadSerial reads a device's registration line, its serial followed by
// "\r", from r and returns the serial.
//
// A "\n" right after the "\r" is taken as part of the line, but only when r
// has already buffered it: waiting for a byte that a "\r"-only device may
// never send would stall the registration. Everything after the line stays
// in r: it is the device's data, and the caller goes on reading it from r,
// not from the connection under r.
//
// ReadSerial returns io.EOF if the stream ended before its first byte,
// an error wrapping io.ErrUnexpectedEOF if it ended inside the line, an
// error wrapping ErrEmptySerial, ErrSerialTooLong or ErrBadSerial for a line
// that is not a valid serial, and r's own error otherwise. It reads at most
// MaxSerialLen+1 bytes of a line that is too long, and stops at the first
// control byte.
func ReadSerial(r *bufio.Reader) (string, error) {
	var buf [MaxSerialLen]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if err != io.EOF {
				return "", err
			}
			if n == 0 {
				return "", io.EOF
			}
			return "", newError([]error{io.ErrUnexpectedEOF},
				`cccp: connection ended after %s, before the \r that ends a serial; a device registers by sending its serial, then \r`,
				quote(string(buf[:n])))
		}
		switch {
		case c == '\r' && n == 0:
			return "", newError([]error{ErrEmptySerial},
				`cccp: empty serial: the device sent \r before any serial; a device registers by sending its serial, then \r`)
		case c == '\r':
			s := string(buf[:n])
			if err := checkSerial(s, "cccp: serial "); err != nil {
				return "", err
			}
			if r.Buffered() > 0 {
				if next, _ := r.Peek(1); next[0] == '\n' {
					r.Discard(1)
				}
			}
			return s, nil
		case c == '\n':
			return "", newError([]error{ErrBadSerial},
				`cccp: serial %s ended with \n (LF) instead of \r (CR); a device must end its serial with \r`,
				quote(string(buf[:n])))
		case c < 0x20 || c == 0x7f:
			return "", newError([]error{ErrBadSerial},
				`cccp: serial %s has control character %U at byte %d; a serial is printable text ended by \r`,
				quote(string(buf[:n])), rune(c), n)
		case n == MaxSerialLen:
			return "", newError([]error{ErrSerialTooLong},
				`cccp: serial %s... is longer than %d bytes, or its \r is missing; a device must send a serial of at most %d bytes, then \r`,
				quote(string(buf[:32])), MaxSerialLen, MaxSerialLen)
		}
		buf[n] = c
		n++
	}
}

// WriteSerial writes the registration line for serial, the serial followed
// by "\r", to w in one Write call. It writes nothing and returns an error
// wrapping ErrEmptySerial, ErrSerialTooLong or ErrBadSerial if serial could
// not be read back by ReadSerial.
func WriteSerial(w io.Writer, serial string) error {
	if err := CheckSerial(serial); err != nil {
		return err
	}
	line := make([]byte, 0, len(serial)+1)
	line = append(line, serial...)
	line = append(line, '\r')
	_, err := w.Write(line)
	return err
}

// CheckSerial reports whether serial is one that a device can register with:
// 1 to MaxSerialLen bytes of valid UTF-8 without control characters. The
// error wraps ErrEmptySerial, ErrSerialTooLong or ErrBadSerial.
func CheckSerial(serial string) error {
	return checkSerial(serial, "cccp: serial ")
}

// checkSerial is CheckSerial with the start of the message chosen by the
// caller, so that a query error reads `bad query: serial="..."` and a line
// error reads `serial "..."`. extra sentinels are added to the ones matched.
func checkSerial(s, prefix string, extra ...error) error {
	wrap := func(sentinel error, format string, args ...any) error {
		return newError(append([]error{sentinel}, extra...),
			prefix+quote(s)+" "+format, args...)
	}
	if s == "" {
		return wrap(ErrEmptySerial, "is empty; give the serial the device registers with")
	}
	if len(s) > MaxSerialLen {
		return wrap(ErrSerialTooLong, "is %d bytes long; a serial has at most %d bytes", len(s), MaxSerialLen)
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return wrap(ErrBadSerial, "is not valid UTF-8 at byte %d; a serial is printable UTF-8 text", i)
			}
		}
		if unicode.IsControl(r) {
			return wrap(ErrBadSerial, "has control character %U at byte %d; a serial is printable text", r, i)
		}
	}
	return nil
}

// quote quotes s for an error message, cut to a length a log line can hold.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
