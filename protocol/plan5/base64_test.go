package plan5

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"
)

// simdModes are the ways the codec can run here: the portable loops, and
// the SIMD ones where the CPU has them.
func simdModes() []bool {
	if hasSIMD() {
		return []bool{false, true}
	}
	return []bool{false}
}

// testSizes are the lengths the encoder and decoder tests take: all up to
// 300, and around the SIMD steps (24 bytes, 32 characters) up to Data's
// largest payload.
func testSizes() []int {
	var ns []int
	for n := 0; n < 300; n++ {
		ns = append(ns, n)
	}
	for _, base := range []int{24 * 20, 24 * 41, 32 * 30} {
		for d := -9; d <= 9; d++ {
			ns = append(ns, base+d)
		}
	}
	for _, base := range []int{4096, ChunkSize(PlainMaxLine), ChunkSize(DefaultMaxLine)} {
		for d := -4; d <= 4; d++ {
			ns = append(ns, base+d)
		}
	}
	return ns
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestAppendBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range testSizes() {
		src := randomBytes(r, n)
		if n%7 == 0 {
			// All 64 characters, and runs of each end of the alphabet.
			for i := range src {
				src[i] = byte(i * 37)
			}
		}
		for _, prefix := range [][]byte{nil, []byte("xy"), make([]byte, 3, 1000)} {
			want := base64.StdEncoding.AppendEncode(bytes.Clone(prefix), src)
			for _, simd := range simdModes() {
				got := appendBase64With(bytes.Clone(prefix), src, simd)
				if !bytes.Equal(got, want) {
					t.Fatalf("len %d, prefix %q, simd %v: got %q, want %q", n, prefix, simd, got, want)
				}
			}
		}
	}
	for _, fill := range []byte{0, 0xff} {
		src := bytes.Repeat([]byte{fill}, 1000)
		want := base64.StdEncoding.EncodeToString(src)
		for _, simd := range simdModes() {
			if got := appendBase64With(nil, src, simd); string(got) != want {
				t.Fatalf("1000 bytes of %#x, simd %v: got %q, want %q", fill, simd, got, want)
			}
		}
	}
}

func FuzzAppendBase64(f *testing.F) {
	f.Add([]byte("hello, world"))
	f.Add([]byte{0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6})
	f.Add(bytes.Repeat([]byte{0xfb, 0xef, 0xbe, 0, 1, 2}, 20))
	f.Fuzz(func(t *testing.T, src []byte) {
		want := base64.StdEncoding.AppendEncode([]byte("p"), src)
		for _, simd := range simdModes() {
			if got := appendBase64With([]byte("p"), src, simd); !bytes.Equal(got, want) {
				t.Fatalf("simd %v: got %q, want %q", simd, got, want)
			}
		}
	})
}

func BenchmarkAppendBase64(b *testing.B) {
	src := randomBytes(rand.New(rand.NewPCG(7, 8)), 48<<10)
	dst := make([]byte, 0, 70<<10)
	for _, simd := range simdModes() {
		b.Run(fmt.Sprintf("simd=%v", simd), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				dst = appendBase64With(dst[:0], src, simd)
			}
		})
	}
	b.Run("std", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = base64.StdEncoding.AppendEncode(dst[:0], src)
		}
	})
}

func TestDecodeBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range testSizes() {
		enc := base64.StdEncoding.EncodeToString(randomBytes(r, n))
		checkDecode(t, []byte(enc))
		// A character that is not base64 at places all along, and
		// padding where it does not belong; in a long one, around the
		// first SIMD blocks and the tail.
		places := []int{0, 31, 32, 33, 63, len(enc) / 2, len(enc) - 9, len(enc) - 5, len(enc) - 3, len(enc) - 1}
		if n <= 300 {
			places = places[:0]
			for i := 0; i < len(enc); i += 1 + len(enc)/20 {
				places = append(places, i)
			}
		}
		chars := []byte{'=', '"', '\\', 0, 0x80, '-', '_', ' ', '\r', '\n'}
		if n > 1000 {
			chars = []byte{'=', '"', '\r'} // TestDecodeBase64Bytes tries them all
		}
		for _, i := range places {
			for _, c := range chars {
				bad := []byte(enc)
				bad[i] = c
				checkDecode(t, bad)
			}
		}
	}
}

// TestDecodeBase64Bytes puts every byte value at every place of the
// first two SIMD blocks: the SIMD loop tells the alphabet from the rest
// by the characters' nibbles.
func TestDecodeBase64Bytes(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString(randomBytes(rand.New(rand.NewPCG(9, 10)), 120))
	for i := range 64 {
		for c := range 256 {
			bad := []byte(enc)
			bad[i] = byte(c)
			checkDecode(t, bad)
		}
	}
}

// checkDecode fails t unless decodeBase64 does what the standard library
// does with src, both ways: the same bytes, or an error where it gives
// one. A '\r' or '\n' is an error, which the standard library skips.
func checkDecode(t *testing.T, src []byte) {
	t.Helper()
	want := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	wn, werr := base64.StdEncoding.Decode(want, src)
	if bytes.ContainsAny(src, "\r\n") {
		werr = errBase64Line
	}
	for _, simd := range simdModes() {
		got := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		gn, gerr := decodeBase64With(got, src, simd)
		if (werr == nil) != (gerr == nil) || werr == nil && !bytes.Equal(got[:gn], want[:wn]) {
			t.Fatalf("%q, simd %v: got %x, %v; want %x, %v", src, simd, got[:gn], gerr, want[:wn], werr)
		}
	}
}

func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("aGVsbG8sIHdvcmxkIQ=="))
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, 100))))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAA=AAA"))
	f.Add([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xef, 0xbe, 0, 1, 2}, 20))))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="))
	f.Fuzz(func(t *testing.T, src []byte) {
		checkDecode(t, src)
	})
}

func BenchmarkDecodeBase64(b *testing.B) {
	raw := randomBytes(rand.New(rand.NewPCG(5, 6)), 48<<10)
	src := []byte(base64.StdEncoding.EncodeToString(raw))
	dst := make([]byte, 48<<10)
	for _, simd := range simdModes() {
		b.Run(fmt.Sprintf("simd=%v", simd), func(b *testing.B) {
			b.SetBytes(int64(len(dst)))
			for b.Loop() {
				decodeBase64With(dst, src, simd)
			}
		})
	}
	b.Run("std", func(b *testing.B) {
		b.SetBytes(int64(len(dst)))
		for b.Loop() {
			base64.StdEncoding.Decode(dst, src)
		}
	})
}

// TestSIMDDoesTheBulk: the SIMD loops, where there are any, take all but
// the last steps of a long run (else the tests above would pass on the
// portable loops alone).
func TestSIMDDoesTheBulk(t *testing.T) {
	if !hasSIMD() {
		t.Skip("no SIMD loops on this CPU")
	}
	src := randomBytes(rand.New(rand.NewPCG(11, 12)), 24*100)
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(src)))
	if k := encodeSIMD(enc, src); k != 99 {
		t.Errorf("encodeSIMD did %d blocks of 2400 bytes, want 99", k)
	}
	base64.StdEncoding.Encode(enc, src)
	dec := make([]byte, len(src))
	if k := decodeSIMD(dec, enc); k != 99 {
		t.Errorf("decodeSIMD did %d blocks of 3200 characters, want 99", k)
	}
	if !bytes.Equal(dec[:24*99], src[:24*99]) {
		t.Errorf("decodeSIMD decoded %x, want %x", dec[:24*99], src[:24*99])
	}
}
