package c8y

import "bytes"

var bom = []byte("\uFEFF")

// SplitOperations is a bufio.SplitFunc that splits a stream of operations
// into tokens for ParseOperation. A token is either one JSON object, which
// may span lines (the Cumulocity documentation's example is pretty-printed),
// or one line of anything else, a SmartREST line, without its "\n" or
// "\r\n". White space and UTF-8 byte order marks before a token are
// skipped, so blank lines give no token.
//
// An object ends at the '}' that closes its first '{', outside JSON
// strings; what follows it on the same line starts the next token. An
// object still open at the end of the stream is returned as it is, for
// ParseOperation to refuse; before the end, one still open is read on,
// up to the Scanner's buffer limit (bufio.ErrTooLong).
func SplitOperations(data []byte, atEOF bool) (advance int, token []byte, err error) {
	start := 0
	for start < len(data) {
		if c := data[start]; c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			start++
			continue
		}
		if bytes.HasPrefix(data[start:], bom) {
			start += len(bom)
			continue
		}
		if !atEOF && bytes.HasPrefix(bom, data[start:]) {
			return start, nil, nil // perhaps a byte order mark, cut short
		}
		break
	}
	rest := data[start:]
	if len(rest) == 0 {
		return start, nil, nil
	}
	if rest[0] == '{' {
		if end := objectEnd(rest); end > 0 {
			return start + end, rest[:end], nil
		}
	} else if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		return start + i + 1, bytes.TrimSuffix(rest[:i], []byte("\r")), nil
	}
	if atEOF {
		return len(data), rest, nil
	}
	return start, nil, nil
}

// objectEnd returns the length of the JSON object at the start of b, up to
// and including the '}' that closes it, or 0 if it is not closed in b.
// Only braces outside strings count; b need not be valid JSON.
func objectEnd(b []byte) int {
	depth := 0
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}
