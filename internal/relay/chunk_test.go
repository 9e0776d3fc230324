package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// TestJoinTCPWithStream joins a TCP connection and an in-memory
// connection: the TCP side is read through its descriptor. Its bytes and
// its end reach the other side.
func TestJoinTCPWithStream(t *testing.T) {
	app, local := flowtest.TCPPair(t)
	far, near := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Join(local, near, nil)
		done <- err
	}()
	up := bytes.Repeat([]byte("to the far side "), 20000) // many chunks
	go func() {
		app.Write(up)
		app.CloseWrite()
	}()
	gotUp := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(far) // ends when Join passes the half-close (a pipe closes)
		gotUp <- b
	}()
	if b := <-gotUp; !bytes.Equal(b, up) {
		t.Fatalf("far side got %d bytes, want %d", len(b), len(up))
	}
	// net.Pipe has no half-close, so Join passed the end on by closing
	// near; the rest of Join ends with the far side.
	far.Close()
	app.Close()
	<-done
}

// TestJoinStreamToTCP sends through a stream side to a TCP side in writes
// of every size.
func TestJoinStreamToTCP(t *testing.T) {
	app, local := flowtest.TCPPair(t)
	far, near := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Join(local, near, nil)
		done <- err
	}()
	var want bytes.Buffer
	go func() {
		for _, n := range []int{1, 1023, 1024, 1025, chunkSize, chunkSize + 7, 3 * chunkSize, 64} {
			b := bytes.Repeat([]byte{byte(n)}, n)
			far.Write(b)
		}
		far.Close()
	}()
	for _, n := range []int{1, 1023, 1024, 1025, chunkSize, chunkSize + 7, 3 * chunkSize, 64} {
		want.Write(bytes.Repeat([]byte{byte(n)}, n))
	}
	app.SetDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(app)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("app got %d bytes, %v; want %d bytes and EOF", len(got), err, want.Len())
	}
	app.Close()
	<-done
}

// TestRawReadInterrupted: a read through the descriptor ends on Close
// with net.ErrClosed and on a deadline with os.ErrDeadlineExceeded, as the
// connection's own Read would.
func TestRawReadInterrupted(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(*net.TCPConn)
		want error
	}{
		{"close", func(c *net.TCPConn) { c.Close() }, net.ErrClosed},
		{"deadline", func(c *net.TCPConn) { c.SetReadDeadline(time.Now()) }, os.ErrDeadlineExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, local := flowtest.TCPPair(t)
			r := newChunkReader(local)
			if r.raw == nil {
				t.Skip("no raw reads on this platform")
			}
			got := make(chan error, 1)
			go func() {
				b, err := r.read()
				r.release()
				if len(b) != 0 {
					err = errors.New("read bytes nobody sent")
				}
				got <- err
			}()
			c.stop(local)
			if err := <-got; !errors.Is(err, c.want) {
				t.Fatalf("read = %v, want %v", err, c.want)
			}
		})
	}
}

// TestRawReadEOF: the peer's half-close is io.EOF after the bytes.
func TestRawReadEOF(t *testing.T) {
	app, local := flowtest.TCPPair(t)
	app.Write([]byte("last words"))
	app.CloseWrite()
	r := newChunkReader(local)
	var got []byte
	for {
		b, err := r.read()
		got = append(got, b...)
		r.release()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "last words" {
		t.Fatalf("got %q", got)
	}
}
