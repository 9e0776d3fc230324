package relay

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// TestJoinTCPSmallAndBulk relays, between two TCP connections, small
// messages answered one by one, then a bulk transfer, then small messages
// again: copyTCP moves from copying to splicing and back (the burst is
// counted in pieces larger than the small messages' buffer: it left the
// copying), and every byte arrives in order, each direction's count
// matches, and the half-close crosses.
func TestJoinTCPSmallAndBulk(t *testing.T) {
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	var (
		counted  [2]atomic.Int64
		maxPiece atomic.Int64 // the largest piece counted from a to b
	)
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, func(aToB bool, n int) {
			if aToB {
				counted[0].Add(int64(n))
				if int64(n) > maxPiece.Load() {
					maxPiece.Store(int64(n))
				}
			} else {
				counted[1].Add(int64(n))
			}
		})
		joined <- err
	}()
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))

	echo := func(msg string) {
		t.Helper()
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(server, got); err != nil || string(got) != msg {
			t.Fatalf("server read %q, %v; want %q", got, err, msg)
		}
		if _, err := server.Write(got); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, got); err != nil || string(got) != msg {
			t.Fatalf("client read %q, %v; want %q", got, err, msg)
		}
	}
	for i := range 20 {
		echo("small request " + string(rune('a'+i)))
	}
	bulk := randomBytes(1, 3*(4<<20)+12345) // more than a pipe holds
	sent := make(chan error, 1)
	go func() {
		_, err := client.Write(bulk)
		sent <- err
	}()
	got := make([]byte, len(bulk))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bulk) {
		t.Fatal("the bulk transfer arrived changed")
	}
	for i := range 20 {
		echo("small again " + string(rune('a'+i)))
	}
	client.CloseWrite()
	if n, err := server.Read(got[:1]); n != 0 || err != io.EOF {
		t.Fatalf("server read %d, %v after the client's half-close; want 0, EOF", n, err)
	}
	server.CloseWrite()
	if n, err := client.Read(got[:1]); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v after the server's half-close; want 0, EOF", n, err)
	}
	if err := <-joined; err != nil {
		t.Fatalf("Join = %v", err)
	}
	if m := maxPiece.Load(); m <= smallSize {
		t.Errorf("the burst was counted in pieces of at most %d bytes: copied through the %d-byte buffer, not spliced", m, smallSize)
	}
	small := int64(20 * (len("small request a") + len("small again a")))
	if a2b, b2a := counted[0].Load(), counted[1].Load(); a2b != small+int64(len(bulk)) || b2a != small {
		t.Errorf("counted %d and %d bytes, want %d and %d", a2b, b2a, small+int64(len(bulk)), small)
	}
}

// TestJoinTCPIdleHoldsNoPipe checks that idle relays between TCP
// connections hold no pipe, after small messages and after a burst
// (an HTTP keep-alive connection after a download): a splice waiting for
// its source holds two descriptors and a pipe's buffers, four
// descriptors per idle session more than its two sockets, which a DP
// with many idle sessions runs out of.
func TestJoinTCPIdleHoldsNoPipe(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc/self/fd")
	}
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	for _, burst := range []int{0, 1 << 20} {
		t.Run(fmt.Sprintf("burst %d", burst), func(t *testing.T) {
			const n = 20
			before := count()
			var ends []interface{ Close() error }
			done := make(chan error, n)
			for range n {
				client, a := flowtest.TCPPair(t)
				b, server := flowtest.TCPPair(t)
				go func() {
					_, err := Join(a, b, nil)
					done <- err
				}()
				// One exchange each way, so both directions have
				// read and wait again.
				client.SetDeadline(time.Now().Add(time.Minute))
				server.SetDeadline(time.Now().Add(time.Minute))
				there := append(make([]byte, burst), "hello"...)
				sent := make(chan error, 1)
				go func() {
					_, err := client.Write(there)
					sent <- err
				}()
				if _, err := io.ReadFull(server, make([]byte, len(there))); err != nil {
					t.Fatal(err)
				}
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				server.Write([]byte("olleh"))
				if _, err := io.ReadFull(client, make([]byte, 5)); err != nil {
					t.Fatal(err)
				}
				ends = append(ends, client, server)
			}
			// A few pipes may wait in the pool for the next splice.
			grown := count() - before
			t.Logf("%d idle relays: %d more descriptors", n, grown)
			if grown > 4*n+8 {
				t.Errorf("%d idle relays hold %d descriptors, want at most %d (their sockets, and a few pooled pipes): pipes held while waiting", n, grown, 4*n+8)
			}
			for _, c := range ends {
				c.Close()
			}
			for range n {
				<-done
			}
		})
	}
}

// TestJoinTCPSmallPieces relays small pieces between two TCP connections:
// a stream of them written back to back, then pieces answered one by one.
// The copy reads them within one RawConn.Read of the source (copySmall):
// a piece that came while the copy wrote must still be read (else an
// answer here would never come), and every byte arrives in order.
func TestJoinTCPSmallPieces(t *testing.T) {
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, nil)
		joined <- err
	}()
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))

	data := randomBytes(2, 1<<20)
	var pieces [][]byte
	for rest, i := data, 0; len(rest) > 0; i++ {
		k := min(len(rest), 1+(i*7919)%700)
		pieces = append(pieces, rest[:k])
		rest = rest[k:]
	}
	sent := make(chan error, 1)
	go func() {
		for _, p := range pieces {
			if _, err := client.Write(p); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the pieces written back to back arrived changed")
	}

	buf := make([]byte, 700)
	for i, p := range pieces[:500] {
		from, to := client, server
		if i%2 == 1 {
			from, to = server, client
		}
		if _, err := from.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(to, buf[:len(p)]); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if !bytes.Equal(buf[:len(p)], p) {
			t.Fatalf("answer %d arrived changed", i)
		}
	}
	client.CloseWrite()
	server.CloseWrite()
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
}

// asyncBuffered is a source that pushes its bytes itself (PushAsync), and
// would hand over bytes read ahead if asked (Buffered).
type asyncBuffered struct {
	net.Conn
	taken atomic.Bool
}

func (c *asyncBuffered) TakeBuffered() []byte {
	c.taken.Store(true)
	return []byte("ahead ")
}

func (c *asyncBuffered) PushTo(w io.Writer, count func(int)) (int64, error) {
	n, err := io.Copy(w, c.Conn)
	count(int(n))
	return n, err
}

func (c *asyncBuffered) PushAsync(w io.Writer, count func(int), done func(int64, error)) {
	go func() { done(c.PushTo(w, count)) }()
}

// TestJoinTakesNothingAheadOfAnAsyncSide: Join takes bytes read ahead
// only from a side it reads itself; a side whose bytes PushAsync moves
// keeps them (Join would not write them: they would be lost).
func TestJoinTakesNothingAheadOfAnAsyncSide(t *testing.T) {
	for _, side := range []string{"a", "b"} {
		t.Run(side, func(t *testing.T) {
			x, y := net.Pipe()
			client, tcp := flowtest.TCPPair(t)
			src := &asyncBuffered{Conn: x}
			a, b := net.Conn(src), net.Conn(tcp)
			if side == "b" {
				a, b = b, a
			}
			joined := make(chan error, 1)
			go func() {
				_, err := Join(a, b, nil)
				joined <- err
			}()
			go func() {
				y.Write([]byte("pushed"))
				y.Close()
			}()
			got, err := io.ReadAll(client)
			if err != nil || string(got) != "pushed" {
				t.Errorf("read %q, %v; want %q", got, err, "pushed")
			}
			client.Close()
			<-joined
			if src.taken.Load() {
				t.Error("Join took the bytes read ahead of a side that PushAsync relays")
			}
		})
	}
}
