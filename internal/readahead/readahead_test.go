package readahead

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConnIsNetConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := net.Pipe()
		c1, c2 = New(a, nil, 0), New(b, nil, 1024)
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

// What arrives before anyone reads is kept, up to the bound; then reading
// stops until the user reads.
func TestBoundedReadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		ra := New(a, nil, 10)
		defer ra.Close()
		wrote := make(chan int)
		go func() {
			n, _ := b.Write([]byte("0123456789abcdef"))
			wrote <- n
		}()
		synctest.Wait()
		if got := ra.Buffered(); got != 10 {
			t.Fatalf("Buffered = %d, want the bound 10", got)
		}
		select {
		case n := <-wrote:
			t.Fatalf("the writer finished (%d bytes) with the buffer full", n)
		default:
		}
		buf := make([]byte, 4)
		n, err := ra.Read(buf)
		if err != nil || string(buf[:n]) != "0123" {
			t.Fatalf("Read = %q, %v", buf[:n], err)
		}
		rest, _ := io.ReadAll(io.LimitReader(ra, 12))
		if string(rest) != "456789abcdef" {
			t.Fatalf("read %q, want the rest in order", rest)
		}
		<-wrote
		b.Close()
		if _, err := ra.Read(buf); err != io.EOF {
			t.Fatalf("Read after the peer closed = %v, want io.EOF", err)
		}
		<-ra.Done()
		if ra.Err() != io.EOF {
			t.Fatalf("Err = %v, want io.EOF", ra.Err())
		}
	})
}

// Bytes the source had buffered already (a bufio.Reader after a header
// line) come first, and data that arrived before the end is read before
// io.EOF.
func TestSourceAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		go func() {
			b.Write([]byte("HEADER\rdata1"))
			b.Write([]byte("data2"))
			b.Close()
		}()
		br := bufio.NewReader(a)
		line, _ := br.ReadString('\r')
		if line != "HEADER\r" {
			t.Fatalf("line %q", line)
		}
		ra := New(a, br, 0)
		defer ra.Close()
		<-ra.Done()
		got, err := io.ReadAll(ra)
		if err != nil || string(got) != "data1data2" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
	})
}

func TestDiscard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		ra := New(a, nil, 4)
		defer ra.Close()
		b.Write([]byte("keep"))
		synctest.Wait()
		ra.SetMode(Discard)
		if ra.Buffered() != 0 {
			t.Fatal("SetMode(Discard) kept the buffer")
		}
		// With discarding on, a writer is never held back by the bound.
		if _, err := b.Write([]byte(strings.Repeat("x", 100))); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ra.SetMode(Hold)
		b.Write([]byte("new"))
		buf := make([]byte, 10)
		n, err := ra.Read(buf)
		if err != nil || string(buf[:n]) != "new" {
			t.Fatalf("Read = %q, %v; want only what came after discarding", buf[:n], err)
		}
	})
}

// In Limit mode a full buffer does not hide the peer's end, and a byte
// beyond the bound ends the Conn; in Hold mode the same end goes unseen.
func TestLimit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mode    Mode
		sent    string
		wantErr error // nil: the end stays unseen
	}{
		{"hold hides the end behind a full buffer", Hold, "0123456789", nil},
		{"limit sees the end behind a full buffer", Limit, "0123456789", io.EOF},
		{"limit ends a peer that sends too much", Limit, "0123456789X", ErrOverflow},
		{"limit sees the end of a peer within the bound", Limit, "0123", io.EOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				ra := New(a, nil, 10)
				defer ra.Close()
				ra.SetMode(tt.mode)
				go func() {
					b.Write([]byte(tt.sent))
					b.Close()
				}()
				synctest.Wait()
				select {
				case <-ra.Done():
					if tt.wantErr == nil {
						t.Fatalf("the Conn ended (%v); want it held", ra.Err())
					}
				default:
					if tt.wantErr != nil {
						t.Fatalf("the Conn is still open; want it ended with %v", tt.wantErr)
					}
					return
				}
				if ra.Err() != tt.wantErr {
					t.Fatalf("Err = %v, want %v", ra.Err(), tt.wantErr)
				}
				got, err := io.ReadAll(io.LimitReader(ra, 10))
				if want := min(len(tt.sent), 10); err != nil || string(got) != tt.sent[:want] {
					t.Fatalf("read %q, %v; want what the buffer holds, %q", got, err, tt.sent[:want])
				}
				if _, err := ra.Read(make([]byte, 1)); err != tt.wantErr {
					t.Fatalf("Read after the buffer = %v, want %v", err, tt.wantErr)
				}
			})
		})
	}
}

// A reader that comes while a full Limit Conn waits for its peer switches
// it to Hold: nothing is lost, and the buffer passes its bound by at most
// the one byte read to look for the end.
func TestLimitThenHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		ra := New(a, nil, 4)
		defer ra.Close()
		ra.SetMode(Limit)
		sent := "0123456789"
		go func() {
			b.Write([]byte(sent[:4]))
			ra.SetMode(Hold)
			b.Write([]byte(sent[4:]))
			b.Close()
		}()
		synctest.Wait()
		if n := ra.Buffered(); n > 5 {
			t.Fatalf("Buffered = %d, want at most the bound and one byte", n)
		}
		got, err := io.ReadAll(ra)
		if err != nil || string(got) != sent {
			t.Fatalf("ReadAll = %q, %v; want %q", got, err, sent)
		}
	})
}

func TestReadCancelAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		ra := New(a, nil, 0)
		cancel := make(chan struct{})
		errc := make(chan error)
		go func() {
			_, err := ra.ReadCancel(make([]byte, 1), cancel)
			errc <- err
		}()
		synctest.Wait()
		close(cancel)
		if err := <-errc; !errors.Is(err, ErrCanceled) {
			t.Fatalf("ReadCancel = %v, want ErrCanceled", err)
		}
		go func() {
			_, err := ra.Read(make([]byte, 1))
			errc <- err
		}()
		synctest.Wait()
		ra.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read blocked in Close = %v, want net.ErrClosed", err)
		}
		if err := ra.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close = %v, want net.ErrClosed", err)
		}
	})
}
