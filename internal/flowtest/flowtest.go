// Package flowtest holds what the tests of a fast writer behind a slow
// reader share, in every adapter: a byte pattern to send and check, a
// reader that is slower than any writer, the heap's size, and a log
// handler a test can read back; and what the data path's tests of real
// sockets share: a loopback TCP pair (TCPPair) and a link connection that
// breaks in the middle of a write (CutConn).
//
// The tests run in a testing/synctest bubble over in-memory connections,
// with peers written by hand that send as the originals do, as fast as
// the connection takes their bytes. SlowRead reads only when the whole
// bubble is still: the writer has then filled everything between itself
// and the reader, so what sits in between at that moment is what rtcp
// buffers, and a test can bound it exactly.
package flowtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// period is the pattern's: byte i of every transfer is byte(i % period),
// a prime, so that no frame or chunk size lines up with it.
const period = 251

// MaxPiece is the most bytes Pattern.At hands out at once.
const MaxPiece = 1 << 20

// A Pattern hands out pieces of the byte pattern without allocating.
type Pattern struct{ table []byte }

// NewPattern returns a Pattern.
func NewPattern() *Pattern {
	t := make([]byte, period+MaxPiece)
	for i := range t {
		t[i] = byte(i % period)
	}
	return &Pattern{t}
}

// At returns the n bytes of the pattern from offset off, n <= MaxPiece.
// The caller must not modify them.
func (p *Pattern) At(off int64, n int) []byte {
	k := int(off % period)
	return p.table[k : k+n : k+n]
}

// SlowRead reads total bytes of the pattern from r, from offset 0, in
// pieces of step bytes (at most MaxPiece). Before each piece it waits for the bubble to be
// still (synctest.Wait) and calls still with the bytes read so far: the
// writer is then held back, and everything it wrote beyond that sits
// between it and r. It returns how many bytes it read and the first error
// or difference. It must run in a synctest bubble, and no other goroutine
// of the bubble may call synctest.Wait meanwhile.
func SlowRead(r io.Reader, p *Pattern, total int64, step int, still func(read int64)) (int64, error) {
	buf := make([]byte, step)
	var read int64
	for read < total {
		synctest.Wait()
		if still != nil {
			still(read)
		}
		n, err := io.ReadFull(r, buf[:min(int64(step), total-read)])
		if !bytes.Equal(buf[:n], p.At(read, n)) {
			for i := range n {
				if buf[i] != p.At(read+int64(i), 1)[0] {
					return read + int64(i), fmt.Errorf("byte %d is %#x, want %#x: the stream lost or reordered bytes", read+int64(i), buf[i], p.At(read+int64(i), 1)[0])
				}
			}
		}
		read += int64(n)
		if err != nil {
			return read, err
		}
	}
	return read, nil
}

// ReadAll reads r to its end, checking that it carries the pattern from
// offset 0, and counts what it read in read (if not nil) as it goes. It
// returns how many bytes it read and the first error or difference;
// io.EOF is no error.
func ReadAll(r io.Reader, p *Pattern, read *atomic.Int64) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		if !bytes.Equal(buf[:k], p.At(n, k)) {
			return n, fmt.Errorf("the bytes from %d on differ from what was sent: the stream lost or reordered bytes", n)
		}
		n += int64(k)
		if read != nil {
			read.Add(int64(k))
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// HeapInuse collects the garbage and returns the bytes of the heap's
// spans in use: what the process holds, not what it threw away.
func HeapInuse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// A Record is one logged message: its level, text, and attributes
// (those of Logger.With included) as key=value.
type Record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (r Record) String() string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Attrs {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%v %q", r.Level, r.Msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, r.Attrs[k])
	}
	return b.String()
}

// Logs is a slog.Handler that keeps every record, for a test to read.
type Logs struct {
	mu      *sync.Mutex
	records *[]Record
	attrs   []slog.Attr
}

// NewLogs returns an empty Logs and a Logger that writes to it.
func NewLogs() (*Logs, *slog.Logger) {
	l := &Logs{mu: new(sync.Mutex), records: new([]Record)}
	return l, slog.New(l)
}

func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *Logs) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(slices.Clip(l.attrs), as...)
	return &c
}

func (l *Logs) WithGroup(string) slog.Handler { return l }

func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Msg: r.Message, Attrs: make(map[string]string)}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	*l.records = append(*l.records, rec)
	l.mu.Unlock()
	return nil
}

// Find returns the records at level or above whose message is msg.
func (l *Logs) Find(level slog.Level, msg string) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range *l.records {
		if r.Level >= level && r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// AtLeast returns the records at level or above.
func (l *Logs) AtLeast(level slog.Level) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range *l.records {
		if r.Level >= level {
			out = append(out, r)
		}
	}
	return out
}

// Greeter runs a loopback server that is not a DP: it greets each
// connection with greeting, as redis or sshd do, and closes it when the
// client does. It stops, with its goroutines, when the test ends.
func Greeter(t testing.TB, greeting string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.WriteString(c, greeting)
				io.Copy(io.Discard, c)
			})
		}
	})
	return l.Addr().String()
}

// ErrCut is the error of a write to a CutConn past its allowance.
var ErrCut = errors.New("link cut by the test")

// CutConn is a link connection that, once armed, takes exactly a given
// number of bytes more and then fails every write, the way a connection
// that breaks in the middle of a write does.
type CutConn struct {
	net.Conn
	mu    sync.Mutex // guards armed and left
	armed bool
	left  int
}

// Arm lets c take left more bytes.
func (c *CutConn) Arm(left int) {
	c.mu.Lock()
	c.armed, c.left = true, left
	c.mu.Unlock()
}

func (c *CutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.armed {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	k := min(len(p), c.left)
	c.left -= k
	c.mu.Unlock()
	n, err := c.Conn.Write(p[:k])
	if err == nil && k < len(p) {
		err = ErrCut
	}
	return n, err
}

// TCPPair returns the two ends of a loopback TCP connection, both closed
// when the test ends.
func TCPPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// StalledPair returns the two ends of a loopback TCP connection (TCPPair)
// whose writer fills at once when its reader reads nothing: a 4 KiB
// receive buffer at reader, an 8 KiB send buffer at writer. A relay's
// write to writer then blocks within a few KiB, as toward a client that
// has stopped reading.
func StalledPair(t testing.TB) (writer, reader *net.TCPConn) {
	t.Helper()
	writer, reader = TCPPair(t)
	reader.SetReadBuffer(4 << 10)
	writer.SetWriteBuffer(8 << 10)
	return writer, reader
}

// TLSPair returns the two ends of a TLS connection over a loopback TCP
// connection (TCPPair), handshaken; all are closed when the test ends.
func TLSPair(t testing.TB) (server, client *tls.Conn) {
	t.Helper()
	a, b := TCPPair(t)
	return TLSOver(t, a, b)
}

// TLSOver returns the two ends of a TLS connection over the two ends a
// (the server's) and b (the client's) of a connection, handshaken; all
// are closed when the test ends.
func TLSOver(t testing.TB, a, b net.Conn) (server, client *tls.Conn) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = tls.Server(a, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	client = tls.Client(b, &tls.Config{RootCAs: pool, ServerName: "relay.test"})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// ServeEach accepts connections on l until the test ends, and serves each
// with serve on a goroutine of its own, closing it when serve returns. At
// the test's end it closes l and waits for every serve to return.
func ServeEach(t testing.TB, l net.Listener, serve func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
}

// Echo serves l (ServeEach) as an echo service: each connection's bytes
// come back until its client ends it, then the service closes it.
func Echo(t testing.TB, l net.Listener) {
	ServeEach(t, l, func(c net.Conn) { io.Copy(c, c) })
}

// Parked reports whether a goroutine is parked in one of states ("IO
// wait", "select", "chan send") with fn (as a stack names it, without
// the parenthesis) on its stack: a dump of every goroutine is the only
// way a test can know that a write has got that far and waits. buf holds
// the dump (1 MiB is plenty).
func Parked(buf []byte, fn string, states ...string) bool {
	n := runtime.Stack(buf, true)
	for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
		if !bytes.Contains(g, []byte(fn+"(")) {
			continue
		}
		for _, state := range states {
			if bytes.Contains(g, []byte("["+state)) {
				return true
			}
		}
	}
	return false
}

// WaitParked waits until Parked(fn, states...) holds, and fails t if it
// does not within bound (on the wall clock: not in a synctest bubble).
func WaitParked(t testing.TB, bound time.Duration, fn string, states ...string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(bound)
	for !Parked(buf, fn, states...) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come to wait (%s) within %v", fn, strings.Join(states, " or "), bound)
		}
		runtime.Gosched()
	}
}
