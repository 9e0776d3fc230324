package plan5

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
)

// enc12 maps 12 bits to their two base64 characters (standard alphabet),
// the first in the low byte.
var enc12 = func() (t [4096]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = uint16(alphabet[i>>6]) | uint16(alphabet[i&63])<<8
	}
	return t
}()

// appendBase64 appends the padded standard base64 encoding of src to dst,
// as base64.StdEncoding.AppendEncode does, faster: Data's C is most of
// what a busy link writes. Where the CPU has them, SIMD instructions
// encode 24 bytes a step (base64_amd64.s); then a table of 12-bit pairs
// encodes 6 bytes a step, and the standard library the tail.
func appendBase64(dst, src []byte) []byte { return appendBase64With(dst, src, hasSIMD()) }

// appendBase64With is appendBase64, with the SIMD loop only if simd is
// true (the tests run both ways).
func appendBase64With(dst, src []byte, simd bool) []byte {
	n := base64.StdEncoding.EncodedLen(len(src))
	dst = growBytes(dst, n)
	out := dst[len(dst) : len(dst)+n]
	di := 0
	if simd {
		k := encodeSIMD(out, src)
		di, src = 32*k, src[24*k:]
	}
	for len(src) >= 8 {
		// Read 8 bytes, use the first 6 (48 bits -> four 12-bit pairs).
		v := binary.BigEndian.Uint64(src)
		w := uint64(enc12[v>>52]) |
			uint64(enc12[v>>40&0xfff])<<16 |
			uint64(enc12[v>>28&0xfff])<<32 |
			uint64(enc12[v>>16&0xfff])<<48
		binary.LittleEndian.PutUint64(out[di:], w)
		di += 8
		src = src[6:]
	}
	base64.StdEncoding.Encode(out[di:], src)
	return dst[:len(dst)+n]
}

// dec12 maps two base64 characters (standard alphabet), the first in
// the low byte, to their 12 bits; a pair with a character outside the
// alphabet (or '=') maps to 1<<15. It is made when first used: 128 KiB
// that a program which decodes no Data does not pay for.
var dec12 = sync.OnceValue(func() *[1 << 16]uint16 {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var val [256]int
	for c := range val {
		val[c] = -1
	}
	for v, c := range []byte(alphabet) {
		val[c] = v
	}
	t := new([1 << 16]uint16)
	for i := range t {
		hi, lo := val[i&0xff], val[i>>8]
		if hi < 0 || lo < 0 {
			t[i] = 1 << 15
		} else {
			t[i] = uint16(hi<<6 | lo)
		}
	}
	return t
})

// errBase64Line reports a '\r' or '\n' in base64 that decodeBase64 was
// given: the standard library skips them, JSON does not allow them raw.
var errBase64Line = errors.New("plan5: line break in base64")

// decodeBase64 decodes the padded standard base64 src into dst, which has
// room for base64.StdEncoding.DecodedLen(len(src)) bytes, and returns the
// bytes written, as base64.StdEncoding.Decode does, faster: where the CPU
// has them, SIMD instructions decode 32 characters a step
// (base64_amd64.s), then a table of character pairs 8 a step; the last
// characters, and any that these do not know, go to the standard library
// (which also says what is wrong with them). Unlike Decode it refuses
// '\r' and '\n', which JSON does not allow in a string.
func decodeBase64(dst, src []byte) (int, error) { return decodeBase64With(dst, src, hasSIMD()) }

// decodeBase64With is decodeBase64, with the SIMD loop only if simd is
// true (the tests run both ways).
func decodeBase64With(dst, src []byte, simd bool) (int, error) {
	n := 0
	if simd {
		k := decodeSIMD(dst, src)
		n, src = 24*k, src[32*k:]
	}
	t := dec12()
	// Stop 8 characters short of the end, so that the standard library
	// sees the padding, and while dst has 8 bytes for each 6 written.
	for len(src) >= 16 && len(dst)-n >= 8 {
		v := binary.LittleEndian.Uint64(src)
		a, b, c, d := t[uint16(v)], t[uint16(v>>16)], t[uint16(v>>32)], t[uint16(v>>48)]
		if (a|b|c|d)&(1<<15) != 0 {
			break
		}
		binary.BigEndian.PutUint64(dst[n:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		n += 6
		src = src[8:]
	}
	// Only here can a line break hide: the loops above stop at one.
	if bytes.IndexByte(src, '\r') >= 0 || bytes.IndexByte(src, '\n') >= 0 {
		return n, errBase64Line
	}
	m, err := base64.StdEncoding.Decode(dst[n:], src)
	return n + m, err
}

// growBytes returns b with room for n more bytes.
func growBytes(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n+len(b)/4)
	copy(nb, b)
	return nb
}
