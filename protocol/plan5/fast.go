package plan5

import (
	"bytes"
	"strconv"
)

// Fast paths for the handshake messages every session starts with:
// Connect and Ack in their usual forms are written and read without
// encoding/json. Its reflection costs time on the dial path, and it grows
// the stack of the goroutine that then relays the session for its whole
// life. Anything else goes through encoding/json, which the fuzz targets
// hold these to.

// plainJSON reports whether s goes between JSON quotes as it is, the way
// encoding/json writes it: printable ASCII other than '"' and '\', and
// other than '<', '>' and '&', which encoding/json escapes.
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendFast appends the JSON body of an Ack without a reason or of a
// Connect of plain strings, and its '\n'; ok is false for anything else.
func appendFast(dst []byte, m Message) (_ []byte, ok bool) {
	switch m := m.(type) {
	case *Ack:
		if m.R != "" {
			return dst, false
		}
		dst = append(dst, `{"X":`...)
		dst = strconv.AppendInt(dst, m.X, 10)
		return append(dst, '}', '\n'), true
	case *Connect:
		if !plainJSON(m.N) || !plainJSON(m.Addr) || !plainJSON(m.Token) {
			return dst, false
		}
		dst = append(dst, `{"N":"`...)
		dst = append(dst, m.N...)
		dst = append(dst, '"')
		if m.Addr != "" {
			dst = append(dst, `,"Addr":"`...)
			dst = append(dst, m.Addr...)
			dst = append(dst, '"')
		}
		if m.Token != "" {
			dst = append(dst, `,"Token":"`...)
			dst = append(dst, m.Token...)
			dst = append(dst, '"')
		}
		return append(dst, '}', '\n'), true
	}
	return dst, false
}

// fastInt reads the JSON integer at the start of b, refusing what
// encoding/json would read differently or refuse (leading zeros,
// overflow); it returns the number and its length.
func fastInt(b []byte) (x int64, n int, ok bool) {
	if n < len(b) && b[n] == '-' {
		n++
	}
	start := n
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == start || n-start > 1 && b[start] == '0' {
		return 0, 0, false
	}
	x, err := strconv.ParseInt(string(b[:n]), 10, 64)
	return x, n, err == nil
}

// fastAck decodes {"X":n}.
func fastAck(b []byte) (*Ack, bool) {
	const pre = `{"X":`
	if !bytes.HasPrefix(b, []byte(pre)) {
		return nil, false
	}
	x, n, ok := fastInt(b[len(pre):])
	if !ok || string(b[len(pre)+n:]) != "}" {
		return nil, false
	}
	return &Ack{X: x}, true
}

// fastConnect decodes {"N":"s"}, with ,"Addr":"s" and ,"Token":"s"
// after it if present, of plain strings.
func fastConnect(b []byte) (*Connect, bool) {
	var (
		c  Connect
		ok bool
	)
	if b, ok = fastField(b, `{"N":"`, &c.N); !ok {
		return nil, false
	}
	if bytes.HasPrefix(b, []byte(`,"Addr":"`)) {
		if b, ok = fastField(b, `,"Addr":"`, &c.Addr); !ok {
			return nil, false
		}
	}
	if bytes.HasPrefix(b, []byte(`,"Token":"`)) {
		if b, ok = fastField(b, `,"Token":"`, &c.Token); !ok {
			return nil, false
		}
	}
	if string(b) != "}" {
		return nil, false
	}
	return &c, true
}

// fastField reads pre, then a plain string up to its closing quote into
// *s, and returns what follows.
func fastField(b []byte, pre string, s *string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(pre)) {
		return nil, false
	}
	b = b[len(pre):]
	end := bytes.IndexByte(b, '"')
	if end < 0 || !plainJSON(b[:end]) {
		return nil, false
	}
	*s = string(b[:end])
	return b[end+1:], true
}
