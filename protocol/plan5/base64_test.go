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
