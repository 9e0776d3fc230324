package mux

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// TestBulkSplicerWholeBurst: a BulkSplicer splices a burst of many
// pipes' worth until src's end, and returns before that only after a
// splice that brought less than bulkLeave (the burst is over); a return
// every few MiB would cost the relay a copied read and a short splice
// each time (it did, at 4 MiB: a tenth more system calls than io.Copy's
// splice). Every byte arrives, and count sees each piece.
func TestBulkSplicerWholeBurst(t *testing.T) {
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	bs := NewBulkSplicer(b, a)
	if bs == nil {
		t.Fatal("NewBulkSplicer = nil for two TCP connections")
	}
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))

	burst := make([]byte, 12<<20+12345)
	rand.NewChaCha8([32]byte{3, 4}).Read(burst) // fast under -race, where a loop per byte takes seconds
	sent := make(chan error, 1)
	go func() {
		_, err := client.Write(burst)
		if err == nil {
			err = client.CloseWrite()
		}
		sent <- err
	}()
	received := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(server)
		received <- got
	}()

	var (
		total, counted int64
		last           int64
		calls          int
	)
	for {
		n, eof, ok, _, err := bs.Splice(func(k int64) {
			counted += k
			last = k
		})
		calls++
		total += n
		if err != nil || !ok {
			t.Fatalf("Splice = %d, eof %v, ok %v, %v after %d bytes", n, eof, ok, err, total)
		}
		if eof {
			break
		}
		if last >= bulkLeave {
			t.Fatalf("Splice returned after a splice of %d bytes (call %d, %d bytes in all), not at src's end or after a splice under %d", last, calls, total, bulkLeave)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	b.CloseWrite()
	got := <-received
	if total != int64(len(burst)) || counted != total || !bytes.Equal(got, burst) {
		t.Fatalf("spliced %d bytes (counted %d), %d arrived; want %d, unchanged", total, counted, len(got), len(burst))
	}
	t.Logf("%d bytes in %d calls", total, calls)
}
