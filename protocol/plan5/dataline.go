package plan5

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
)

// readData reads the body line of a Data message of the form appendData
// writes when it grants no credit, {"X":n,"C":"..."}, decoding the
// base64 where it lies in the read buffer as the bytes come in:
// ReadSlice would first read the whole line once more, looking for its
// end (4 % of a busy link's CPU). ok is false when the line is of another
// form, longer than the read buffer or maxLine, or reading failed; then
// nothing is consumed and the line goes the usual way, from its start.
// A read that fails returns its error (bufio keeps it for one call only:
// the usual way would not see it). It asks the connection for more only while the bytes of the line it has
// looked at hold no newline, as ReadSlice would: it never waits for bytes
// past the end of a line.
func (r *Reader) readData() (*Data, bool, error) {
	b, _ := r.br.Peek(r.br.Buffered())
	var (
		x  int64
		p  int // where the base64 (then its tail) starts
		ok bool
	)
	for {
		var more bool
		x, p, ok, more = dataHead(b)
		if ok {
			break
		}
		if !more {
			return nil, false, nil
		}
		var err error
		if b, err = r.peekMore(len(b)); b == nil {
			return nil, false, err
		}
	}
	out := 0 // bytes decoded into r.cbuf
	for {
		if p > r.maxLine {
			return nil, false, nil
		}
		// Whole quanta of the alphabet, up to the longest line's worth.
		src := b[p:min(len(b), r.maxLine+1)]
		if need := out + len(src)/4*3 + 32; cap(r.cbuf) < need {
			// Doubling: a line that comes a few bytes a read must not
			// cost a buffer and a copy each time.
			nb := make([]byte, max(need, 2*cap(r.cbuf)))
			copy(nb, r.cbuf[:out])
			r.cbuf = nb
		}
		k, w := decodeQuanta(r.cbuf[out:cap(r.cbuf)], src, hasSIMD())
		p += k
		out += w
		// What is left is the last quantum (padded, or none) and "}, then
		// the newline: 7 bytes at most.
		tail := b[p:]
		const tailMax = len(`AA=="}` + "\n")
		if i := bytes.IndexByte(tail[:min(len(tail), tailMax)], '\n'); i >= 0 {
			d, ok := r.dataEnd(x, out, p, tail[:i])
			return d, ok, nil
		}
		if len(tail) >= tailMax {
			return nil, false, nil // not the form: an escape, another field
		}
		var err error
		if b, err = r.peekMore(len(b)); b == nil {
			return nil, false, err
		}
	}
}

// dataEnd finishes readData: tail is the line from the end of the whole
// quanta (p bytes into the line) to its newline.
func (r *Reader) dataEnd(x int64, out, p int, tail []byte) (*Data, bool) {
	if p+len(tail) > r.maxLine || len(tail) < 2 || string(tail[len(tail)-2:]) != `"}` {
		return nil, false
	}
	enc := tail[:len(tail)-2]
	if bytes.IndexByte(enc, '\r') >= 0 {
		return nil, false // the standard library would skip it, JSON refuses it
	}
	n, err := base64.StdEncoding.Decode(r.cbuf[out:cap(r.cbuf)], enc)
	if err != nil {
		return nil, false
	}
	r.br.Discard(p + len(tail) + 1)
	r.data = Data{X: x, C: r.cbuf[:out+n]}
	return &r.data, true
}

// peekMore returns the buffered bytes once there are more than n, or nil
// if the buffer is full (the line goes the usual way), or nil and the
// error if reading fails.
func (r *Reader) peekMore(n int) ([]byte, error) {
	if n >= r.br.Size() || n > r.maxLine {
		return nil, nil
	}
	if _, err := r.br.Peek(n + 1); err != nil {
		if err == bufio.ErrBufferFull {
			return nil, nil
		}
		return nil, err
	}
	b, _ := r.br.Peek(r.br.Buffered())
	return b, nil
}

// dataHead reads {"X":n,"C":" at the start of b, returning n and the
// head's length; more is true if b is too short to tell.
func dataHead(b []byte) (x int64, n int, ok, more bool) {
	const pre, cpre = `{"X":`, `,"C":"`
	if len(b) < len(pre) {
		return 0, 0, false, string(b) == pre[:len(b)]
	}
	if string(b[:len(pre)]) != pre {
		return 0, 0, false, false
	}
	num := b[len(pre):]
	i := 0
	if i < len(num) && num[i] == '-' {
		i++
	}
	for i < len(num) && num[i] >= '0' && num[i] <= '9' {
		i++
	}
	if i == len(num) {
		return 0, 0, false, i <= len("-9223372036854775808")
	}
	x, i, ok = fastInt(num)
	if !ok {
		return 0, 0, false, false
	}
	rest := num[i:]
	if len(rest) < len(cpre) {
		return 0, 0, false, string(rest) == cpre[:len(rest)]
	}
	if string(rest[:len(cpre)]) != cpre {
		return 0, 0, false, false
	}
	return x, len(pre) + i + len(cpre), true, false
}

// decodeQuanta decodes the longest run of whole 4-character quanta of
// the base64 alphabet at the start of src into dst, no padding, as far as
// dst has room for, with the SIMD loop if simd is true. It returns the
// characters read and the bytes written, and may write up to 8 bytes past
// those.
func decodeQuanta(dst, src []byte, simd bool) (si, di int) {
	if simd {
		k := decodeSIMD(dst, src)
		si, di = 32*k, 24*k
	}
	t := dec12()
	for len(src)-si >= 8 && len(dst)-di >= 8 {
		v := binary.LittleEndian.Uint64(src[si:])
		a, b, c, d := t[uint16(v)], t[uint16(v>>16)], t[uint16(v>>32)], t[uint16(v>>48)]
		if (a|b|c|d)&(1<<15) != 0 {
			break
		}
		binary.BigEndian.PutUint64(dst[di:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		si += 8
		di += 6
	}
	for len(src)-si >= 4 && len(dst)-di >= 3 {
		a, b := t[binary.LittleEndian.Uint16(src[si:])], t[binary.LittleEndian.Uint16(src[si+2:])]
		if (a|b)&(1<<15) != 0 {
			break
		}
		v := uint32(a)<<12 | uint32(b)
		dst[di], dst[di+1], dst[di+2] = byte(v>>16), byte(v>>8), byte(v)
		si += 4
		di += 3
	}
	return si, di
}
