package mux

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// Tests of Stream.PushTo / WriteTo: a stream's bytes handed from the
// session's read loop straight to a writer.

// tcpLink is a link of two sessions over loopback TCP, with cfg on both.
func tcpLink(t *testing.T, cfg Config) *link {
	t.Helper()
	ca, cb := flowtest.TCPPair(t)
	return &link{
		a: New(ca, newBinFramer(ca), cfg), b: New(cb, newBinFramer(cb), cfg),
		ca: ca, cb: cb,
	}
}

// binFramer is a binary Framer, far cheaper than jsonFramer for the
// megabytes these tests move: a fixed header, then the strings and the
// data. Like a real wire's Framer it reuses its read buffer, so a frame's
// Data is valid only until the next ReadFrame. It counts what it writes
// (a Counter).
type binFramer struct {
	br       *bufio.Reader
	bw       *bufio.Writer
	cw       countWriter // under bw
	produced int64
	f        Frame
	rbuf     []byte
	rhdr     [binHeader]byte // ReadFrame's and WriteFrame's run concurrently
	whdr     [binHeader]byte
}

// The header: kind, flags, ID, Credit, then the lengths of Name, Addr,
// Token, Reason and Data.
const binHeader = 1 + 1 + 8 + 8 + 4*4 + 4

const (
	binAbort = 1 << iota
	binPing
	binPong
)

func newBinFramer(c net.Conn) *binFramer {
	fr := &binFramer{br: bufio.NewReaderSize(c, 64<<10), cw: countWriter{w: c}}
	fr.bw = bufio.NewWriterSize(&fr.cw, 64<<10)
	return fr
}

// countWriter counts the bytes w takes.
type countWriter struct {
	w io.Writer
	n int64
}

func (cw *countWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

// binSize is the length of f's encoding.
func binSize(f *Frame) int64 {
	return int64(binHeader + len(f.Name) + len(f.Addr) + len(f.Token) + len(f.Reason) + len(f.Data))
}

func (fr *binFramer) Counts() (produced, written int64) { return fr.produced, fr.cw.n }

func (fr *binFramer) WriteFrame(f *Frame) error {
	fr.produced += binSize(f)
	h := fr.whdr[:0]
	var flags byte
	if f.Abort {
		flags |= binAbort
	}
	if f.Ping {
		flags |= binPing
	}
	if f.Pong {
		flags |= binPong
	}
	h = append(h, byte(f.Kind), flags)
	h = binary.BigEndian.AppendUint64(h, uint64(f.ID))
	h = binary.BigEndian.AppendUint64(h, uint64(int64(f.Credit)))
	for _, s := range []string{f.Name, f.Addr, f.Token, f.Reason} {
		h = binary.BigEndian.AppendUint32(h, uint32(len(s)))
	}
	h = binary.BigEndian.AppendUint32(h, uint32(len(f.Data)))
	fr.bw.Write(h)
	for _, s := range []string{f.Name, f.Addr, f.Token, f.Reason} {
		fr.bw.WriteString(s)
	}
	_, err := fr.bw.Write(f.Data)
	return err
}

func (fr *binFramer) Flush() error { return fr.bw.Flush() }

func (fr *binFramer) ReadFrame() (*Frame, error) {
	h := fr.rhdr[:]
	if _, err := io.ReadFull(fr.br, h); err != nil {
		return nil, err
	}
	fr.f = Frame{
		Kind:   Kind(h[0]),
		Abort:  h[1]&binAbort != 0,
		Ping:   h[1]&binPing != 0,
		Pong:   h[1]&binPong != 0,
		ID:     int64(binary.BigEndian.Uint64(h[2:])),
		Credit: int(int64(binary.BigEndian.Uint64(h[10:]))),
	}
	var strs [4]string
	for i := range strs {
		n := binary.BigEndian.Uint32(h[18+4*i:])
		if n > 1<<16 {
			return nil, &ProtocolError{Msg: "string too long"}
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(fr.br, b); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		strs[i] = string(b)
	}
	fr.f.Name, fr.f.Addr, fr.f.Token, fr.f.Reason = strs[0], strs[1], strs[2], strs[3]
	n := binary.BigEndian.Uint32(h[34:])
	if n > 16<<20 {
		return nil, &ProtocolError{Msg: "frame too long"}
	}
	if n > 0 {
		if cap(fr.rbuf) < int(n) {
			fr.rbuf = make([]byte, n)
		}
		fr.f.Data = fr.rbuf[:n]
		if _, err := io.ReadFull(fr.br, fr.f.Data); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
	}
	return &fr.f, nil
}

// randomBytes returns n reproducible random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// writeRandomSizes writes data to w in writes of random sizes (1 byte to
// 64 KiB, so that frames are split by ChunkSize and by credit).
func writeRandomSizes(w io.Writer, data []byte, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	for len(data) > 0 {
		k := min(len(data), 1+rng.IntN(64<<10))
		n, err := w.Write(data[:k])
		data = data[n:]
		if err != nil {
			return err
		}
		if n != k {
			return io.ErrShortWrite
		}
	}
	return nil
}

type pushResult struct {
	n   int64
	err error
}

// pushVias are the two ways to push a stream: PushTo, on a goroutine of
// the caller's, and PushAsync, on its own while it has work.
var pushVias = []string{"PushTo", "PushAsync"}

// startPush pushes st to w by via, and returns where the result comes.
func startPush(st *Stream, via string, w io.Writer, count func(int)) <-chan pushResult {
	pushed := make(chan pushResult, 1)
	switch via {
	case "PushTo":
		go func() {
			n, err := st.PushTo(w, count)
			pushed <- pushResult{n, err}
		}()
	case "PushAsync":
		st.PushAsync(w, count, func(n int64, err error) { pushed <- pushResult{n, err} })
	default:
		panic("startPush: no way " + via)
	}
	return pushed
}

// pushCounter is PushTo's count: it checks every piece and sums them.
type pushCounter struct {
	sum, pieces, bad atomic.Int64
}

func (c *pushCounter) count(n int) {
	if n <= 0 {
		c.bad.Add(1)
	}
	c.sum.Add(int64(n))
	c.pieces.Add(1)
}

// tcpDest is a PushTo destination that wraps a TCP connection (the read
// loop writes to its socket directly) and counts the bytes that went
// through its Write instead: those PushTo's goroutine drained from the
// stream's buffer after the socket had no room.
type tcpDest struct {
	*net.TCPConn
	drained, writes atomic.Int64
	once            sync.Once
	firstWrite      chan struct{} // closed when Write is first called
}

func newTCPDest(c *net.TCPConn) *tcpDest {
	return &tcpDest{TCPConn: c, firstWrite: make(chan struct{})}
}

func (d *tcpDest) Unwrap() *net.TCPConn { return d.TCPConn }

func (d *tcpDest) Write(p []byte) (int, error) {
	d.once.Do(func() { close(d.firstWrite) })
	n, err := d.TCPConn.Write(p)
	d.drained.Add(int64(n))
	d.writes.Add(1)
	return n, err
}

// slowTCPDest returns a TCP destination with small socket buffers, and
// its far end: the destination fills at once. Not smaller than 32 KiB:
// with 8 KiB buffers loopback TCP waits on its persist timer for most of
// a second per window (a plain Write of 4 MiB took 27 s).
func slowTCPDest(t *testing.T) (*tcpDest, *net.TCPConn) {
	t.Helper()
	near, far := flowtest.TCPPair(t)
	t.Cleanup(func() { near.Close(); far.Close() })
	near.SetWriteBuffer(32 << 10)
	far.SetReadBuffer(32 << 10)
	return newTCPDest(near), far
}

// readSlowly reads r in small pieces until an error, hashing what it
// reads; it starts once start is closed.
func readSlowly(r io.Reader, start <-chan struct{}, piece int) (sum [32]byte, n, reads int64, err error) {
	<-start
	h := sha256.New()
	buf := make([]byte, piece)
	for {
		k, rerr := r.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if k > 0 {
			reads++
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	copy(sum[:], h.Sum(nil))
	return sum, n, reads, err
}

// TestPushToTCPSlowReader pushes 16 MiB through a flow-controlled stream to
// a TCP connection whose far end reads slowly through small socket
// buffers: the read loop's non-blocking write fills the socket, the rest
// waits in the stream's buffer and PushTo's goroutine writes it, and every
// byte arrives in order.
func TestPushToTCPSlowReader(t *testing.T) {
	for _, via := range pushVias {
		t.Run(via, func(t *testing.T) { testPushToTCPSlowReader(t, via) })
	}
}

func testPushToTCPSlowReader(t *testing.T, via string) {
	const total = 16 << 20
	l := tcpLink(t, flowConfig(256<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()

	dst, far := slowTCPDest(t)

	var c pushCounter
	pushed := startPush(y, via, dst, c.count)
	data := randomBytes(1, total)
	wrote := make(chan error, 1)
	go func() {
		err := writeRandomSizes(x, data, 1)
		if err == nil {
			err = x.CloseWrite()
		}
		wrote <- err
	}()
	type readResult struct {
		sum      [32]byte
		n, reads int64
		err      error
	}
	read := make(chan readResult, 1)
	go func() {
		// The far end reads nothing until the socket has been found full
		// (PushTo had to Write), then reads in small pieces.
		sum, n, reads, err := readSlowly(far, dst.firstWrite, 1500)
		read <- readResult{sum, n, reads, err}
	}()

	if err := recvOrHang(t, wrote, "writing the stream"); err != nil {
		t.Fatalf("writing the stream: %v", err)
	}
	r := recvOrHang(t, pushed, via+"'s return")
	if r.err != nil || r.n != total {
		t.Fatalf("%s returned %d, %v; want %d, nil after the peer's CloseWrite", via, r.n, r.err, total)
	}
	dst.CloseWrite()
	got := recvOrHang(t, read, "the far end's read")
	if got.err != io.EOF || got.n != total || got.sum != sha256.Sum256(data) {
		t.Fatalf("far end read %d bytes (%v), SHA-256 equal: %v; want %d bytes then io.EOF",
			got.n, got.err, got.sum == sha256.Sum256(data), total)
	}
	if c.sum.Load() != total || c.bad.Load() != 0 {
		t.Errorf("count was called with pieces summing to %d (%d not positive), want %d", c.sum.Load(), c.bad.Load(), total)
	}
	drained := dst.drained.Load()
	direct := total - drained
	t.Logf("%d pieces counted; %d bytes written by the read loop, %d by PushTo in %d Writes; far end read %d times",
		c.pieces.Load(), direct, drained, dst.writes.Load(), got.reads)
	if drained == 0 {
		t.Error("no byte went through PushTo's Write: the buffered path was not exercised")
	}
	if direct == 0 {
		t.Error("no byte was written by the read loop: the direct path was not exercised")
	}
}

// recvOrHang receives from ch, failing the test if that takes so long that
// only a hang explains it.
func recvOrHang[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangBound):
		t.Fatalf("%s did not happen within %v: a hang", what, hangBound)
		panic("unreachable")
	}
}

// TestPushToSlowDestinationDoesNotStallLink: while PushTo waits on a
// destination that takes nothing (its far end does not read), the bytes
// that keep arriving for the stream wait in its buffer; the session's read
// loop must not wait on the destination, so another stream on the same
// link carries megabytes meanwhile.
func TestPushToSlowDestinationDoesNotStallLink(t *testing.T) {
	for _, via := range pushVias {
		t.Run(via, func(t *testing.T) { testPushToSlowDestinationDoesNotStallLink(t, via) })
	}
}

func testPushToSlowDestinationDoesNotStallLink(t *testing.T, via string) {
	const total = 1 << 20
	l := tcpLink(t, flowConfig(256<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()
	o1, o2 := l.open(t)
	defer o1.Close()
	defer o2.Close()

	dst, far := slowTCPDest(t)
	pushed := startPush(y, via, dst, nil)
	data := randomBytes(5, total)
	wrote := make(chan error, 1)
	go func() {
		err := writeRandomSizes(x, data, 5)
		if err == nil {
			err = x.CloseWrite()
		}
		wrote <- err
	}()
	// PushTo is blocked writing what the full socket did not take, and the
	// writer goes on using its credit.
	recvOrHang(t, dst.firstWrite, "PushTo's first Write")
	echoed := make(chan error, 1)
	go func() { echoed <- echo(o1, o2, 4<<20) }()
	if err := recvOrHang(t, echoed, "an echo on another stream while PushTo's destination is stalled"); err != nil {
		t.Fatalf("another stream while PushTo's destination is stalled: %v", err)
	}

	release := make(chan struct{})
	close(release)
	read := make(chan hashResult, 1)
	go func() {
		sum, n, _, err := readSlowly(far, release, 32<<10)
		read <- hashResult{sum, n, err}
	}()
	if err := recvOrHang(t, wrote, "writing the stream"); err != nil {
		t.Fatalf("writing the stream: %v", err)
	}
	if r := recvOrHang(t, pushed, via+"'s return"); r.err != nil || r.n != total {
		t.Fatalf("%s returned %d, %v; want %d, nil", via, r.n, r.err, total)
	}
	dst.CloseWrite()
	if got := recvOrHang(t, read, "the far end's read"); got.err != io.EOF || got.n != total || got.sum != sha256.Sum256(data) {
		t.Fatalf("far end read %d bytes (%v), SHA-256 equal: %v; want %d then io.EOF",
			got.n, got.err, got.sum == sha256.Sum256(data), total)
	}
}

// lockedBuffer is a bytes.Buffer safe for PushTo's goroutine and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestPushToEnds: PushTo returns nil once the peer has ended its side
// cleanly and every byte is delivered, and an error (never io.EOF) when
// the stream was cut off, to a TCP connection and to any other writer.
func TestPushToEnds(t *testing.T) {
	for _, via := range pushVias {
		for _, dest := range []string{"tcp", "writer"} {
			for _, end := range []string{"CloseWrite", "Close", "Abort", "link loss"} {
				t.Run(via+"/"+dest+"/"+end, func(t *testing.T) { testPushToEnds(t, via, dest, end) })
			}
		}
	}
}

func testPushToEnds(t *testing.T, via, dest, end string) {
	const size = 1 << 20
	l := tcpLink(t, flowConfig(64<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()

	var (
		w         io.Writer
		delivered func() []byte
		done      = func() {}
	)
	switch dest {
	case "tcp":
		near, far := flowtest.TCPPair(t)
		defer near.Close()
		defer far.Close()
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(far)
			got <- b
		}()
		w = near
		done = func() { near.CloseWrite() }
		delivered = func() []byte { return <-got }
	case "writer":
		var lb lockedBuffer
		w, delivered = &lb, lb.bytes
	}
	var c pushCounter
	pushed := startPush(y, via, w, c.count)

	data := randomBytes(2, size)
	if err := writeRandomSizes(x, data, 2); err != nil {
		t.Fatalf("writing the stream: %v", err)
	}
	switch end {
	case "CloseWrite":
		x.CloseWrite()
	case "Close":
		x.Close()
	case "Abort":
		x.Abort(errors.New("disk on fire"))
	case "link loss":
		l.ca.Close() // the connection under the writer's session
	}
	r := recvOrHang(t, pushed, via+"'s return")
	done()
	got := delivered()
	if !bytes.Equal(got, data[:min(len(got), len(data))]) {
		t.Fatalf("the destination got %d bytes that are not what was written", len(got))
	}
	if int64(len(got)) != r.n || c.sum.Load() != r.n || c.bad.Load() != 0 {
		t.Errorf("PushTo reported %d bytes, count summed %d (%d not positive), the destination got %d",
			r.n, c.sum.Load(), c.bad.Load(), len(got))
	}
	switch end {
	case "CloseWrite", "Close":
		if r.err != nil || len(got) != size {
			t.Fatalf("PushTo returned %d, %v after the peer's %s; want %d, nil", r.n, r.err, end, size)
		}
	case "Abort":
		var ae *AbortError
		if !errors.As(r.err, &ae) || ae.Reason != "disk on fire" || errors.Is(r.err, io.EOF) {
			t.Fatalf("PushTo returned %v after the peer's Abort, want the AbortError, not io.EOF", r.err)
		}
		// A TCP destination gets what it took at once: a cut stream's
		// push does not wait for it (giveUpLocked).
		if dest == "writer" && len(got) != size {
			t.Errorf("the destination got %d bytes before the Abort, want all %d written before it", len(got), size)
		}
	case "link loss":
		if r.err == nil || errors.Is(r.err, io.EOF) || !strings.Contains(r.err.Error(), "lost") {
			t.Fatalf("PushTo returned %v after link loss, want a lost-link error that is not io.EOF", r.err)
		}
	}
}

// failingWriter takes limit bytes, then fails.
type failingWriter struct {
	mu    sync.Mutex
	limit int
}

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errDiskFull
	}
	w.limit -= len(p)
	return len(p), nil
}

// echo checks that the stream pair (w, r) still carries bytes both ways.
func echo(w, r *Stream, size int) error {
	data := randomBytes(uint64(size), size)
	for _, dir := range []struct {
		name     string
		from, to *Stream
	}{{"there", w, r}, {"back", r, w}} {
		errc := make(chan error, 1)
		go func() { errc <- writeRandomSizes(dir.from, data, 3) }()
		got := make([]byte, size)
		if _, err := io.ReadFull(dir.to, got); err != nil || !bytes.Equal(got, data) {
			return fmt.Errorf("echo %s: read %v, equal %v", dir.name, err, bytes.Equal(got, data))
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("echo %s: write: %v", dir.name, err)
		}
	}
	return nil
}

// TestPushToDestinationFails: when the destination fails (a TCP peer that
// resets, a writer that errs), PushTo returns the error, and the session
// and its other streams go on.
func TestPushToDestinationFails(t *testing.T) {
	for _, via := range pushVias {
		for _, dest := range []string{"tcp reset", "writer error"} {
			t.Run(via+"/"+dest, func(t *testing.T) { testPushToDestinationFails(t, via, dest) })
		}
	}
}

func testPushToDestinationFails(t *testing.T, via, dest string) {
	l := tcpLink(t, flowConfig(64<<10))
	defer l.close()
	x, y := l.open(t)
	other1, other2 := l.open(t)
	defer other1.Close()
	defer other2.Close()

	var w io.Writer
	farDone := make(chan struct{})
	switch dest {
	case "tcp reset":
		near, far := flowtest.TCPPair(t)
		defer near.Close()
		near.SetWriteBuffer(32 << 10)
		far.SetReadBuffer(32 << 10)
		w = near
		go func() {
			// Read a little, then reset the connection.
			defer close(farDone)
			io.ReadFull(far, make([]byte, 64<<10))
			far.SetLinger(0)
			far.Close()
		}()
	case "writer error":
		w = &failingWriter{limit: 100 << 10}
		close(farDone)
	}
	pushed := startPush(y, via, w, nil)
	wrote := make(chan error, 1)
	go func() { wrote <- writePattern(x, 0, 1<<40, 16<<10, nil) }()

	r := recvOrHang(t, pushed, via+"'s return")
	recvOrHang(t, farDone, "the far end's reset")
	if r.err == nil || errors.Is(r.err, io.EOF) {
		t.Fatalf("PushTo to a failed destination returned %d, %v; want an error", r.n, r.err)
	}
	if dest == "writer error" && !errors.Is(r.err, errDiskFull) {
		t.Errorf("PushTo returned %v, want the writer's error", r.err)
	}
	// What a relay does next: cut the stream off.
	y.Abort(r.err)
	if err := recvOrHang(t, wrote, "the writer's return"); err == nil {
		t.Error("the writer of the cut stream had no error")
	}
	x.Close()

	if err := l.a.Err(); err != nil {
		t.Fatalf("session a ended: %v", err)
	}
	if err := l.b.Err(); err != nil {
		t.Fatalf("session b ended: %v", err)
	}
	if err := echo(other1, other2, 1<<20); err != nil {
		t.Fatalf("the other stream after the failure: %v", err)
	}
	// And a stream opened after the failure works too.
	n1, n2 := l.open(t)
	if err := echo(n1, n2, 256<<10); err != nil {
		t.Fatalf("a new stream after the failure: %v", err)
	}
	n1.Close()
	n2.Close()
}

// TestPushToWriterInOrder pushes to a writer that is not a TCP connection
// (a pipe read in small pieces, so that the stream's buffer fills while
// PushTo waits on it), through PushTo and through io.Copy (WriteTo).
func TestPushToWriterInOrder(t *testing.T) {
	const total = 4 << 20
	for _, via := range []string{"PushTo", "PushAsync", "io.Copy"} {
		t.Run(via, func(t *testing.T) {
			l := tcpLink(t, flowConfig(256<<10))
			defer l.close()
			x, y := l.open(t)
			defer x.Close()
			defer y.Close()

			pr, pw := io.Pipe()
			var c pushCounter
			pushed := make(chan pushResult, 1)
			if via == "io.Copy" {
				go func() {
					var r pushResult
					r.n, r.err = io.Copy(pw, y)
					pw.CloseWithError(r.err)
					pushed <- r
				}()
			} else {
				go func() {
					r := <-startPush(y, via, pw, c.count)
					pw.CloseWithError(r.err)
					pushed <- r
				}()
			}
			data := randomBytes(4, total)
			go func() {
				if err := writeRandomSizes(x, data, 4); err == nil {
					x.CloseWrite()
				}
			}()
			start := make(chan struct{})
			close(start)
			sum, n, _, err := readSlowly(pr, start, 1000)
			if err != io.EOF || n != total || sum != sha256.Sum256(data) {
				t.Fatalf("read %d bytes through the pipe (%v), SHA-256 equal: %v; want %d then io.EOF",
					n, err, sum == sha256.Sum256(data), total)
			}
			r := recvOrHang(t, pushed, via+"'s return")
			if r.err != nil || r.n != total {
				t.Fatalf("%s returned %d, %v; want %d, nil", via, r.n, r.err, total)
			}
			if via != "io.Copy" && (c.sum.Load() != total || c.bad.Load() != 0) {
				t.Errorf("count was called with pieces summing to %d (%d not positive), want %d",
					c.sum.Load(), c.bad.Load(), total)
			}
		})
	}
}
