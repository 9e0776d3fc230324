//go:build unix

package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"rtcp/internal/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func rawOf(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestReadWrite: Read and Write move bytes as syscall's do, and a socket
// with nothing to read says EAGAIN rather than waiting.
func TestReadWrite(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	ra, rb := rawOf(t, a), rawOf(t, b)
	var n int
	var err error
	ra.Control(func(fd uintptr) { n, err = Write(int(fd), []byte("hello")) })
	if n != 5 || err != nil {
		t.Fatalf("Write = %d, %v; want 5, nil", n, err)
	}
	buf := make([]byte, 16)
	got := 0
	rerr := rb.Read(func(fd uintptr) bool {
		n, err = Read(int(fd), buf[got:])
		if err == syscall.EAGAIN {
			return false
		}
		if n > 0 {
			got += n
		}
		return err != nil || got == 5
	})
	if rerr != nil || err != nil || string(buf[:got]) != "hello" {
		t.Fatalf("read %q, %v, %v; want hello", buf[:got], rerr, err)
	}
	rb.Control(func(fd uintptr) { n, err = Read(int(fd), buf) })
	if err != syscall.EAGAIN {
		t.Fatalf("Read of an empty socket = %d, %v; want EAGAIN", n, err)
	}
}

// TestWriteConn: WriteConn writes all of a buffer larger than the socket
// takes at once, waiting for the reader, as net.Conn's Write does.
func TestWriteConn(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	a.SetWriteBuffer(16 << 10)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	read := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(b)
		read <- got
	}()
	n, err := WriteConn(rawOf(t, a), data, a)
	if n != len(data) || err != nil {
		t.Fatalf("WriteConn = %d, %v; want %d, nil", n, err, len(data))
	}
	a.CloseWrite()
	if got := <-read; !bytes.Equal(got, data) {
		t.Fatalf("the reader got %d bytes, not the %d written", len(got), len(data))
	}
}

// TestWriteConnErrors: WriteConn ends as net.Conn's Write would at its
// write deadline, at Close and at the peer's reset, with a *net.OpError
// for "write" that the usual checks recognise.
func TestWriteConnErrors(t *testing.T) {
	big := make([]byte, 8<<20)
	t.Run("deadline", func(t *testing.T) {
		a, _ := flowtest.TCPPair(t) // nobody reads
		a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := WriteConn(rawOf(t, a), big, a)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || n >= len(big) {
			t.Fatalf("WriteConn = %d, %v; want fewer bytes and a timeout", n, err)
		}
		checkOp(t, err)
	})
	t.Run("Close", func(t *testing.T) {
		a, _ := flowtest.TCPPair(t)
		rc := rawOf(t, a)
		done := make(chan error, 1)
		go func() {
			_, err := WriteConn(rc, big, a)
			done <- err
		}()
		a.Close()
		err := <-done
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WriteConn after Close = %v; want net.ErrClosed", err)
		}
		checkOp(t, err)
	})
	t.Run("reset", func(t *testing.T) {
		a, b := flowtest.TCPPair(t)
		b.SetLinger(0)
		b.Close() // a reset
		var err error
		for err == nil { // the first write may go out before the reset is known
			_, err = WriteConn(rawOf(t, a), []byte("x"), a)
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("WriteConn to a reset peer = %v; want ECONNRESET or EPIPE", err)
		}
		checkOp(t, err)
	})
}

func checkOp(t *testing.T, err error) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || oe.Addr == nil || oe.Source == nil {
		t.Fatalf("%v is not a *net.OpError for write with both addresses", err)
	}
}

// TestTCPRead: TCP's Read gives what net.Conn's Read gives: the bytes,
// nothing for an empty buffer, io.EOF at the end, and a *net.OpError for
// "read" at its deadline and after Close.
func TestTCPRead(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	r := ReaderOf(b)
	if _, ok := r.(*TCP); !ok {
		t.Fatalf("ReaderOf(*net.TCPConn) = %T; want *TCP", r)
	}
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	go func() {
		a.Write([]byte("abc"))
		a.CloseWrite()
	}()
	got, err := io.ReadAll(r)
	if string(got) != "abc" || err != nil {
		t.Fatalf("ReadAll = %q, %v; want abc", got, err)
	}
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}

	c, _ := flowtest.TCPPair(t)
	rc := ReaderOf(c)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = rc.Read(make([]byte, 4))
	var oe *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read past the deadline = %v; want a read *net.OpError for the deadline", err)
	}
	c.SetReadDeadline(time.Time{})
	c.Close()
	if _, err = rc.Read(make([]byte, 4)); !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after Close = %v; want a read *net.OpError for net.ErrClosed", err)
	}
}

// TestWrapsOnlyTCP: ReaderOf and WriterOf leave anything but a
// *net.TCPConn as it is (a wrapper's Read and Write may do more).
func TestWrapsOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if ReaderOf(a) != io.Reader(a) || WriterOf(a) != io.Writer(a) {
		t.Fatal("ReaderOf or WriterOf wrapped a net.Pipe")
	}
	type wrapper struct{ *net.TCPConn }
	c, _ := flowtest.TCPPair(t)
	w := wrapper{c}
	if _, ok := WriterOf(w).(*TCP); ok {
		t.Fatal("WriterOf wrapped a wrapper of a *net.TCPConn")
	}
	if _, ok := WriterOf(rawWrapper{w}).(*TCP); !ok {
		t.Fatal("WriterOf did not wrap a Wrapper")
	}
	if _, ok := ReaderOf(rawWrapper{w}).(*TCP); !ok {
		t.Fatal("ReaderOf did not wrap a Wrapper")
	}
}

// rawWrapper is a Wrapper: its Read and Write are its TCPConn's.
type rawWrapper struct{ c struct{ *net.TCPConn } }

func (w rawWrapper) RawTCP() *net.TCPConn        { return w.c.TCPConn }
func (w rawWrapper) Read(p []byte) (int, error)  { return w.c.Read(p) }
func (w rawWrapper) Write(p []byte) (int, error) { return w.c.Write(p) }

// TestTCPWritev: Writev writes buffers in order across partial writes
// (a small send buffer, a slow reader) and skips empty ones.
func TestTCPWritev(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	a.SetWriteBuffer(16 << 10)
	w := WriterOf(a).(*TCP)
	var bufs [][]byte
	for i := range 40 {
		bufs = append(bufs, bytes.Repeat([]byte{byte('a' + i%26)}, (i*7919)%(64<<10)))
	}
	checkWritev(t, w, a, b, bufs)
	a.Close()
	if _, err := w.Writev([][]byte{[]byte("x")}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Writev after Close = %v; want net.ErrClosed", err)
	}
}

// TestBlockingLeftAlone: a *net.TCPConn whose descriptor was put in
// blocking mode (os.File's Fd on its File clears O_NONBLOCK on the
// shared file description) is never read or written raw: a raw call that
// blocked would hold its processor, and the garbage collector's
// stop-the-world would wait for it.
func TestBlockingLeftAlone(t *testing.T) {
	a, _ := flowtest.TCPPair(t)
	if !NonBlocking(rawOf(t, a)) {
		t.Fatal("NonBlocking of a fresh connection = false")
	}
	f, err := a.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd() // blocking mode, for a too
	if !raw {
		t.Skip("the calls here are syscall's own in this build: any descriptor will do")
	}
	if NonBlocking(rawOf(t, a)) {
		t.Fatal("NonBlocking of a connection in blocking mode = true")
	}
	if ReaderOf(a) != io.Reader(a) || WriterOf(a) != io.Writer(a) {
		t.Fatal("ReaderOf or WriterOf wrapped a connection in blocking mode")
	}
}

// TestTCPWritevMany: Writev writes more buffers than one writev takes
// (IOV_MAX), empty ones among them.
func TestTCPWritevMany(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	w := WriterOf(a)
	wv, ok := w.(interface{ Writev([][]byte) (int64, error) })
	if !ok {
		t.Skip("no Writev: the connection is left as it is")
	}
	var bufs [][]byte
	for i := range 3000 {
		p := []byte{byte('a' + i%26)}
		if i%7 == 0 {
			p = nil
		}
		bufs = append(bufs, p)
	}
	checkWritev(t, wv, a, b, bufs)
}

// checkWritev writes bufs with w's Writev to a, half-closes a, and
// checks that b reads them all, in order.
func checkWritev(t *testing.T, w interface{ Writev([][]byte) (int64, error) }, a, b *net.TCPConn, bufs [][]byte) {
	t.Helper()
	want := bytes.Join(bufs, nil)
	read := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(b)
		read <- got
	}()
	n, err := w.Writev(bufs)
	if n != int64(len(want)) || err != nil {
		t.Fatalf("Writev of %d buffers = %d, %v; want %d, nil", len(bufs), n, err, len(want))
	}
	a.CloseWrite()
	if got := <-read; !bytes.Equal(got, want) {
		t.Fatalf("the reader got %d bytes, not the %d written in order", len(got), len(want))
	}
}
