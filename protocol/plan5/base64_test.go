package plan5

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

func TestAppendBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for _, prefix := range [][]byte{nil, []byte("xy"), make([]byte, 3, 1000)} {
			got := appendBase64(bytes.Clone(prefix), src)
			want := base64.StdEncoding.AppendEncode(bytes.Clone(prefix), src)
			if !bytes.Equal(got, want) {
				t.Fatalf("len %d, prefix %q: got %q, want %q", n, prefix, got, want)
			}
		}
	}
}

func FuzzAppendBase64(f *testing.F) {
	f.Add([]byte("hello, world"))
	f.Add([]byte{0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6})
	f.Fuzz(func(t *testing.T, src []byte) {
		got := appendBase64([]byte("p"), src)
		want := base64.StdEncoding.AppendEncode([]byte("p"), src)
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func BenchmarkAppendBase64(b *testing.B) {
	src := make([]byte, 48<<10)
	dst := make([]byte, 0, 70<<10)
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = appendBase64(dst[:0], src)
		}
	})
	b.Run("std", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = base64.StdEncoding.AppendEncode(dst[:0], src)
		}
	})
}

func TestDecodeBase64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 300; n++ {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(src)
		checkDecode(t, []byte(enc))
		// A character that is not base64 at every place, and padding
		// where it does not belong.
		for i := 0; i < len(enc); i += 1 + len(enc)/20 {
			for _, c := range []byte{'=', '"', '\\', 0, 0x80, '-', '_', ' '} {
				bad := []byte(enc)
				bad[i] = c
				checkDecode(t, bad)
			}
		}
	}
}

// checkDecode fails t unless decodeBase64 does what the standard library
// does with src: the same bytes, or an error where it gives one.
func checkDecode(t *testing.T, src []byte) {
	t.Helper()
	want := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	wn, werr := base64.StdEncoding.Decode(want, src)
	got := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
	gn, gerr := decodeBase64(got, src)
	if (werr == nil) != (gerr == nil) || werr == nil && !bytes.Equal(got[:gn], want[:wn]) {
		t.Fatalf("%q: got %x, %v; want %x, %v", src, got[:gn], gerr, want[:wn], werr)
	}
}

func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("aGVsbG8sIHdvcmxkIQ=="))
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, 100))))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAA=AAA"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if bytes.ContainsAny(src, "\r\n") {
			return // the caller refuses those first
		}
		checkDecode(t, src)
	})
}

func BenchmarkDecodeBase64(b *testing.B) {
	raw := make([]byte, 48<<10)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	src := []byte(base64.StdEncoding.EncodeToString(raw))
	dst := make([]byte, 48<<10)
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(len(dst)))
		for b.Loop() {
			decodeBase64(dst, src)
		}
	})
	b.Run("std", func(b *testing.B) {
		b.SetBytes(int64(len(dst)))
		for b.Loop() {
			base64.StdEncoding.Decode(dst, src)
		}
	})
}
