package rtcp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/nettest"

	"rtcp/internal/mux"
	"rtcp/internal/yamuxlink"
)

// The framing and the move of a moving session (move.go), on loopback TCP
// pairs standing for the relay and the direct connection, without a DP.

func asStream(c net.Conn) stream {
	return &rawConn{Conn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
}

// movePair is a moving session's two ends over a relay, and the direct
// connection their punches will deliver.
type movePair struct {
	a, b   *moveConn
	da, db net.Conn // the direct connection's ends
}

func newMovePair(t *testing.T, hook func(n int)) *movePair {
	ra, rb := dpRelay(t)
	da, db := tcpPair(t)
	var relayA stream = asStream(ra)
	if hook != nil {
		relayA = &hookedStream{stream: relayA, hook: hook}
	}
	p := &movePair{a: newMoveConn(relayA, nil, nil), b: newMoveConn(asStream(rb), nil, nil), da: da, db: db}
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
		da.Close()
		db.Close()
	})
	return p
}

// dpRelay returns the two ends of a brokered session's relay through a
// DP (its join, which reads the records and strips the reports).
func dpRelay(t *testing.T) (a, b net.Conn) {
	r := newDPRelay(t)
	return r.a, r.b
}

// testRelay is the two ends of a brokered session's relay through a DP,
// which counts it.
type testRelay struct {
	a, b   net.Conn
	dp     *DiscoverPoint
	joined chan error // what the DP's join returned
}

func newDPRelay(t *testing.T) *testRelay {
	a, aDP := tcpPair(t)
	bDP, b := tcpPair(t)
	r := &testRelay{a: a, b: b, dp: new(DiscoverPoint), joined: make(chan error, 1)}
	r.dp.init()
	go func() {
		_, err := r.dp.join(context.Background(), aDP, bDP, "printer-7", r.dp.newBrokeredRelay())
		r.joined <- err
		close(r.joined)
	}()
	t.Cleanup(func() {
		a.Close()
		b.Close()
		for range r.joined {
		}
		r.dp.Close()
	})
	return r
}

// punch delivers both punches' success.
func (p *movePair) punch() {
	p.a.setPunch(p.da, nil)
	p.b.setPunch(p.db, nil)
}

// hookedStream calls hook with the bytes each Write wrote.
type hookedStream struct {
	stream
	hook func(n int)
}

func (h *hookedStream) Write(b []byte) (int, error) {
	n, err := h.stream.Write(b)
	h.hook(n)
	return n, err
}

// pattern is the byte at offset i of a test stream.
func pattern(i int64) byte { return byte(i*7 + i>>8) }

// writeStream writes n pattern bytes to c in pieces of varying size,
// calling mid once half of them are written, then half-closes.
func writeStream(c *moveConn, n int64, mid func()) error {
	var off int64
	buf := make([]byte, 40000)
	size := 1
	for off < n {
		if off >= n/2 && mid != nil {
			mid()
			mid = nil
		}
		k := min(int64(size), n-off)
		for i := range k {
			buf[i] = pattern(off + i)
		}
		w, err := c.Write(buf[:k])
		off += int64(w)
		if err != nil {
			return err
		}
		size = size*3%len(buf) + 1
	}
	return c.CloseWrite()
}

// readStream reads c to its end and checks it holds n pattern bytes.
func readStream(c *moveConn, n int64) error {
	buf := make([]byte, 5000)
	var off int64
	for {
		k, err := c.Read(buf)
		for i := range k {
			if buf[i] != pattern(off+int64(i)) {
				return errors.New("a byte differs: lost, duplicated or reordered")
			}
		}
		off += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != n {
		return errors.New("the stream's length differs")
	}
	return nil
}

// patternWriter checks that what is written to it is the test stream
// (pattern), in order.
type patternWriter struct{ off int64 }

func (w *patternWriter) Write(b []byte) (int, error) {
	for i := range b {
		if b[i] != pattern(w.off+int64(i)) {
			return i, errors.New("a byte differs: lost, duplicated or reordered")
		}
	}
	w.off += int64(len(b))
	return len(b), nil
}

// copyStream reads c to its end through its WriteTo (io.Copy, rtcp
// expose) and checks it holds n pattern bytes.
func copyStream(c *moveConn, n int64) error {
	var w patternWriter
	k, err := c.WriteTo(&w)
	if err != nil {
		return err
	}
	if k != n || w.off != n {
		return fmt.Errorf("WriteTo gave %d bytes (%d written), want %d", k, w.off, n)
	}
	return nil
}

func TestMoveBytesInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		punch func(p *movePair)
		moved bool
	}{
		{"moves", (*movePair).punch, true},
		{"one side first", func(p *movePair) {
			p.b.setPunch(p.db, nil)
			p.a.setPunch(p.da, nil)
		}, true},
		{"punch fails", func(p *movePair) {
			p.a.setPunch(nil, errors.New("no path"))
			p.b.setPunch(nil, errors.New("no path"))
			p.da.Close()
			p.db.Close()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newMovePair(t, nil)
			const n = 3 << 20
			var once sync.Once
			mid := func() { once.Do(func() { tc.punch(p) }) }
			errs := make(chan error, 4)
			go func() { errs <- writeStream(p.a, n, mid) }()
			go func() { errs <- writeStream(p.b, n, mid) }()
			go func() { errs <- readStream(p.a, n) }()
			// b through WriteTo: its small buffer while framed, its
			// large one once moved (or the relay's own, after 'u').
			go func() { errs <- copyStream(p.b, n) }()
			for range 4 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if p.a.isDirect() != tc.moved || p.b.isDirect() != tc.moved {
				t.Errorf("direct: %v and %v, want %v", p.a.isDirect(), p.b.isDirect(), tc.moved)
			}
			if !tc.moved && p.a.punchErr() == nil {
				t.Error("a failed punch left no error")
			}
		})
	}
}

// A peer that moved, to a side without a direct connection: an error,
// never a clean end.
func TestMoveNoDirectHere(t *testing.T) {
	p := newMovePair(t, nil)
	p.a.setPunch(p.da, nil)
	p.b.setPunch(nil, errors.New("the proof failed"))
	if _, err := p.a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, err := p.b.Read(make([]byte, 10))
	if !errors.Is(err, errMovedNoDirect) {
		t.Fatalf("Read: %v, want errMovedNoDirect", err)
	}
	if _, err := p.b.Read(make([]byte, 10)); !errors.Is(err, errMovedNoDirect) {
		t.Errorf("the second Read: %v, want the same error", err)
	}
}

// The relay's end before moved is that direction's clean end; the other
// direction goes on.
func TestMoveHalfClose(t *testing.T) {
	p := newMovePair(t, nil)
	if _, err := p.a.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := p.a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.b)
	if err != nil || string(got) != "abc" {
		t.Fatalf("ReadAll: %q, %v", got, err)
	}
	p.punch() // b's direction moves; a's has ended
	if _, err := p.b.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	p.b.CloseWrite()
	got, err = io.ReadAll(p.a)
	if err != nil || string(got) != "back" {
		t.Fatalf("ReadAll: %q, %v", got, err)
	}
}

// Bad and cut records fail the read, never end it cleanly.
func TestMoveBadRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"unknown type", "x", nil},
		{"empty data", "d\x00\x00", nil},
		{"cut header", "d\x00", errRecordCut},
		{"cut payload", "d\x00\x05ab", errRecordCut},
		{"bytes after moved", "mzz", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra, rb := tcpPair(t)
			defer ra.Close()
			m := newMoveConn(asStream(rb), nil, nil)
			defer m.Close()
			go func() {
				ra.Write([]byte(tc.in))
				ra.(*net.TCPConn).CloseWrite()
			}()
			_, err := io.ReadAll(m)
			if err == nil {
				t.Fatal("ReadAll ended cleanly")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ReadAll: %v, want %v", err, tc.want)
			}
		})
	}
}

// Deadlines set before the move, while the read waits for this side's
// punch, and after it, apply to the connection that carries the bytes.
func TestMoveDeadlines(t *testing.T) {
	p := newMovePair(t, nil)
	p.b.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := p.b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read before the move: %v, want a timeout", err)
	}
	p.a.setPunch(p.da, nil) // a moves; b's punch is still under way
	if _, err := p.a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	p.b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := p.b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read waiting for the punch: %v, want a timeout", err)
	}
	p.b.SetReadDeadline(time.Time{})
	p.b.SetWriteDeadline(time.Now().Add(-time.Second)) // kept for the direct connection
	p.b.setPunch(p.db, nil)
	buf := make([]byte, 1)
	if _, err := io.ReadFull(p.b, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("Read after the move: %q, %v", buf, err)
	}
	if _, err := p.b.Write([]byte("y")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write after the move, past its deadline: %v", err)
	}
	p.b.SetWriteDeadline(time.Time{})
	if _, err := p.b.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p.a, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("Read: %q, %v", buf, err)
	}
	if !p.a.isDirect() || !p.b.isDirect() {
		t.Error("the session did not move both ways")
	}
	p.a.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := p.a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the move, past its deadline: %v", err)
	}
}

// Close unblocks a Read that waits for the punch.
func TestMoveCloseWaitingRead(t *testing.T) {
	p := newMovePair(t, nil)
	p.a.setPunch(p.da, nil)
	if _, err := p.a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := p.b.Read(make([]byte, 1))
		done <- err
	}()
	p.b.Close()
	if err := <-done; err == nil || err == io.EOF {
		t.Fatalf("Read after Close: %v", err)
	}
}

// nettest.TestConn on moving sessions: one that moves once its first
// kilobyte has crossed, one whose punch fails and one that never moves.
func TestMoveConnNettest(t *testing.T) {
	for _, mode := range []string{"moves", "fails", "never"} {
		t.Run(mode, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				var p *movePair
				var written atomic.Int64
				var once sync.Once
				hook := func(n int) {
					if written.Add(int64(n)) > 1024 && mode != "never" {
						once.Do(func() {
							if mode == "moves" {
								go p.punch()
								return
							}
							go func() {
								p.a.setPunch(nil, errors.New("no path"))
								p.b.setPunch(nil, errors.New("no path"))
							}()
						})
					}
				}
				p = newMovePair(t, hook)
				stop = func() {
					p.a.Close()
					p.b.Close()
					p.da.Close()
					p.db.Close()
				}
				return p.a, p.b, stop, nil
			})
		})
	}
}

// maxFuzzRecords bounds FuzzMoveRecords' input. Records of a few bytes
// reach every branch of the reader, split across reads or read whole (a
// record's length is 2 bytes, whatever it says); a longer input repeats
// them. And the fuzzer's minimiser tries about n²/2 cuts of a new input
// whose bytes it cannot remove one by one (a whole data record), each an
// exec of a fraction of a millisecond (two moving sessions; most of it
// the fuzzer's own cost per exec): a data record of 12 KiB, which the
// mutator makes from a length like "00", took it the whole default
// -fuzzminimizetime of 60 s, during which its worker fuzzed nothing.
// Measured on a fresh corpus, 60 s: inputs up to 128 bytes took up to
// 6 s to minimise, up to 64 bytes 1.6 s.
const maxFuzzRecords = 64

// The record reader never panics, and what it returns is the payload of
// the records it read.
func FuzzMoveRecords(f *testing.F) {
	f.Add([]byte("d\x00\x03abcd\x00\x01zm"))
	f.Add([]byte("d\x00\x02hiu raw bytes"))
	f.Add([]byte("d\x00\x05ab"))
	f.Add([]byte("x"))
	f.Add([]byte("mzz"))
	f.Add(append([]byte("d\x00\x3c"), make([]byte, 0x3c)...)) // a long record, whole
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxFuzzRecords {
			t.Skip("longer inputs reach nothing more (maxFuzzRecords)")
		}
		want, ok := decodeRecords(in)
		// Records split across reads, and records read whole; through
		// Read, and through WriteTo (io.Copy), which has buffers of its
		// own.
		for _, chunk := range []int{2, len(in) + 1} {
			for _, writeTo := range []bool{false, true} {
				m := newMoveConn(&bytesStream{r: bytes.NewReader(in), chunk: chunk}, nil, nil)
				m.setPunch(nil, errors.New("no path"))
				var got []byte
				var err error
				if writeTo {
					var b bytes.Buffer
					_, err = m.WriteTo(&b)
					got = b.Bytes()
				} else {
					got, err = io.ReadAll(m)
				}
				m.Close()
				if ok && (err != nil || !bytes.Equal(got, want)) {
					t.Fatalf("reads of %d (WriteTo %v): read %q, %v; want %q, a clean end", chunk, writeTo, got, err, want)
				}
				if !ok && (err == nil || !bytes.HasPrefix(want, got)) {
					t.Fatalf("reads of %d (WriteTo %v): read %q, %v; want an error after at most %q", chunk, writeTo, got, err, want)
				}
			}
		}
	})
}

// decodeRecords is SPEC.md's records read plainly, for a side whose punch
// failed: the session's bytes, and whether they end cleanly (false: an
// error follows the bytes returned).
func decodeRecords(in []byte) (out []byte, ok bool) {
	for len(in) > 0 {
		switch in[0] {
		case 'd':
			if len(in) < 3 {
				return out, false
			}
			l := int(in[1])<<8 | int(in[2])
			if l == 0 || len(in) < 3+l {
				return append(out, in[3:]...), false
			}
			out = append(out, in[3:3+l]...)
			in = in[3+l:]
		case 'u':
			return append(out, in[1:]...), true
		default: // 'm' with no direct connection here, or no record
			return out, false
		}
	}
	return out, true
}

// bytesStream is a stream that reads from r and writes nowhere.
type bytesStream struct {
	net.Conn
	r     *bytes.Reader
	chunk int // the most a Read returns; 0: 2, records split across reads
}

func (s *bytesStream) Read(b []byte) (int, error) {
	if len(b) > cmp.Or(s.chunk, 2) {
		b = b[:cmp.Or(s.chunk, 2)]
	}
	return s.r.Read(b)
}
func (s *bytesStream) Write(b []byte) (int, error)        { return len(b), nil }
func (s *bytesStream) Close() error                       { return nil }
func (s *bytesStream) CloseWrite() error                  { return nil }
func (s *bytesStream) LocalAddr() net.Addr                { return nil }
func (s *bytesStream) RemoteAddr() net.Addr               { return nil }
func (s *bytesStream) SetDeadline(t time.Time) error      { return nil }
func (s *bytesStream) SetReadDeadline(t time.Time) error  { return nil }
func (s *bytesStream) SetWriteDeadline(t time.Time) error { return nil }

// Abort, before or after the move, fails the peer's Read: never a clean
// end.
func TestMoveAbort(t *testing.T) {
	for _, moved := range []bool{false, true} {
		p := newMovePair(t, nil)
		if moved {
			p.punch()
		}
		if _, err := p.a.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(p.b, buf); err != nil {
			t.Fatal(err)
		}
		p.a.Abort(errors.New("cut"))
		if _, err := p.b.Read(buf); err == nil || err == io.EOF {
			t.Errorf("moved %v: Read after the peer's Abort: %v, want an error", moved, err)
		}
	}
}

// TestMovePeerUnframedStaysRelayed: a side whose punch succeeded but
// that has read the peer's 'u' (the peer's punch failed: a proof that
// completed on one side only) stays on the relay too: an 'm' would fail
// the peer's Read, which has no direct connection to read on.
func TestMovePeerUnframedStaysRelayed(t *testing.T) {
	p := newMovePair(t, nil)
	p.b.setPunch(nil, errors.New("proof cut by b's deadline"))
	if _, err := p.b.Write([]byte("x")); err != nil { // 'u', then x
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(p.a, buf); err != nil { // a reads 'u' and x
		t.Fatal(err)
	}
	p.a.setPunch(p.da, nil)
	if _, err := p.a.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p.b, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("b read %q, %v; want y, on the relay", buf, err)
	}
}

// A side that moved keeps its relay, idle, until Close, and then writes
// its report there (the bytes it wrote on the direct connection) before it
// closes it; a side that did not move, or that aborts, reports nothing.
func TestMoveReport(t *testing.T) {
	for _, tc := range []struct {
		name  string
		moved bool
		abort bool
		want  string // what the DP reads on the relay, to its end
	}{
		{"moved", true, false, "m" + report(5+1000)},
		{"unframed", false, false, "uhello" + string(make([]byte, 1000))},
		{"moved, aborted", true, true, "m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra, dpSide := tcpPair(t)
			da, db := tcpPair(t)
			defer dpSide.Close()
			defer db.Close()
			a := newMoveConn(asStream(ra), nil, nil)
			if tc.moved {
				a.setPunch(da, nil)
			} else {
				a.setPunch(nil, errors.New("no path"))
				da.Close()
			}
			if _, err := a.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Write(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			if tc.moved {
				buf := make([]byte, 1)
				if _, err := io.ReadFull(dpSide, buf); err != nil || buf[0] != 'm' {
					t.Fatalf("the relay: %q, %v; want m", buf, err)
				}
				tc.want = tc.want[1:]
			}
			if tc.abort {
				a.Abort(errors.New("cut"))
			} else if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dpSide)
			if tc.abort {
				if err == nil || len(got) > 0 {
					t.Fatalf("the relay after Abort: %q, %v; want a reset and no report", got, err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("the relay: %q, %v; want %q and the end", got, err, tc.want)
			}
		})
	}
}

// TestMoveCloseEndsDirectFirst: a moved side's Close ends the direct
// connection before it writes its report, so a slow relay does not keep
// the peer waiting for the session's end.
func TestMoveCloseEndsDirectFirst(t *testing.T) {
	ra, dpSide := net.Pipe() // a write waits for its read: the slow relay
	da, db := tcpPair(t)
	defer dpSide.Close()
	defer db.Close()
	a := newMoveConn(asStream(ra), nil, nil)
	a.setPunch(da, nil)
	moved := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		_, err := io.ReadFull(dpSide, buf)
		if err == nil && buf[0] != recMoved {
			err = fmt.Errorf("the relay carried %q, want m", buf)
		}
		moved <- err
	}()
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	// Nothing reads the relay yet: the direct connection ends all the same.
	if got, err := io.ReadAll(db); err != nil || string(got) != "hello" {
		t.Fatalf("the direct connection: %q, %v; want hello and the end", got, err)
	}
	// The report, still waiting for the relay, comes once it is read.
	if got, err := io.ReadAll(dpSide); err != nil || string(got) != report(5) {
		t.Fatalf("the relay: %q, %v; want the report of 5 bytes and the end", got, err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// countingStream is a relay that records each Write and counts Reads.
type countingStream struct {
	bytesStream
	writes [][]byte
	reads  int
}

func (s *countingStream) Write(b []byte) (int, error) {
	s.writes = append(s.writes, bytes.Clone(b))
	return len(b), nil
}

func (s *countingStream) Read(b []byte) (int, error) {
	s.reads++
	return s.bytesStream.Read(b)
}

// A record comes in one read of the relay, header and payload, and goes
// in one write, a 'u' with the bytes of the Write that sends it: the
// framing adds no system call to a small message (direct_count_test.go).
func TestMoveOneCallPerRecord(t *testing.T) {
	relay := &countingStream{bytesStream: bytesStream{r: bytes.NewReader([]byte("d\x00\x02hid\x00\x01!u raw")), chunk: 1 << 20}}
	m := newMoveConn(relay, nil, nil)
	defer m.Close()
	buf := make([]byte, 64)
	for _, want := range []string{"hi", "!", " raw"} {
		reads := relay.reads
		n, err := m.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("Read: %q, %v; want %q", buf[:n], err, want)
		}
		if want == "hi" && relay.reads-reads != 1 {
			t.Errorf("Read of the first record: %d reads of the relay, want 1", relay.reads-reads)
		}
	}
	if _, err := m.Write([]byte("ab")); err != nil { // framed: the punch runs
		t.Fatal(err)
	}
	m.setPunch(nil, errors.New("no path"))
	for _, b := range []string{"cd", "e"} {
		if n, err := m.Write([]byte(b)); n != len(b) || err != nil {
			t.Fatalf("Write(%q): %d, %v", b, n, err)
		}
	}
	var got []string
	for _, w := range relay.writes {
		got = append(got, string(w))
	}
	if want := []string{"d\x00\x02ab", "ucd", "e"}; !slices.Equal(got, want) {
		t.Errorf("writes of the relay: %q, want %q", got, want)
	}
}

// A Read after Close fails, as a net.Conn's does, even with bytes read
// ahead from the relay (a data record's rest, or what followed 'u').
func TestMoveReadAfterCloseReadAhead(t *testing.T) {
	for _, in := range []string{"d\x00\x04abcd", "uabcd"} {
		m := newMoveConn(&bytesStream{r: bytes.NewReader([]byte(in)), chunk: 1 << 10}, nil, nil)
		buf := make([]byte, 1)
		if n, err := m.Read(buf); n != 1 || err != nil {
			t.Fatalf("%q: Read: %d, %v", in, n, err)
		}
		m.Close()
		if n, err := m.Read(buf); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%q: Read after Close: %q, %v; want net.ErrClosed", in, buf[:n], err)
		}
	}
}

// A relayed session ('u') keeps no buffer of headerRead once the bytes
// read ahead past 'u' are taken, nor does a direction that ended or
// failed: the 4 KiB lasts only while records are read.
func TestMoveReadAheadReleased(t *testing.T) {
	for _, in := range []string{"uab", "d\x00\x01a", "d\x00\x01ax", "d\x00\x01am"} {
		m := newMoveConn(&bytesStream{r: bytes.NewReader([]byte(in)), chunk: 1 << 10}, nil, nil)
		c1, c2 := net.Pipe()
		c2.Close()
		m.setPunch(c1, nil) // for 'm': the direct connection ends at once
		io.ReadAll(m)
		m.rmu.Lock()
		held := max(cap(m.pend), cap(m.ahead), cap(m.rbuf))
		m.rmu.Unlock()
		m.Close()
		if held != 0 {
			t.Errorf("%q read to its end: %d bytes of buffer held, want 0", in, held)
		}
	}
}

// A Read past its deadline fails, as the relay's would, though bytes read
// ahead wait; they come once the deadline is moved.
func TestMoveReadAheadDeadline(t *testing.T) {
	for _, in := range []string{"d\x00\x04abcd", "uabcd"} {
		m := newMoveConn(&bytesStream{r: bytes.NewReader([]byte(in)), chunk: 1 << 10}, nil, nil)
		buf := make([]byte, 1)
		if n, err := m.Read(buf); n != 1 || err != nil {
			t.Fatalf("%q: Read: %d, %v", in, n, err)
		}
		m.SetReadDeadline(time.Now().Add(-time.Second))
		if n, err := m.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%q: Read past the deadline: %q, %v; want os.ErrDeadlineExceeded", in, buf[:n], err)
		}
		m.SetReadDeadline(time.Time{})
		if n, err := m.Read(buf); string(buf[:n]) != "b" || err != nil {
			t.Errorf("%q: Read with the deadline cleared: %q, %v; want \"b\"", in, buf[:n], err)
		}
		m.Close()
	}
}

// An error the relay returns with bytes comes after them, not lost to
// the read ahead: a Read returns it before the relay is read again.
func TestMoveReadAheadErrorWithBytes(t *testing.T) {
	errX := errors.New("x")
	for _, in := range []string{"d\x00\x02hi", "uhi"} {
		relay := &scriptStream{reads: []scriptRead{{in, errX}, {"!", nil}}}
		m := newMoveConn(relay, nil, nil)
		var got []string
		buf := make([]byte, 64)
		for range 3 {
			n, err := m.Read(buf)
			got = append(got, fmt.Sprintf("%s,%v", buf[:n], err))
		}
		m.Close()
		want := []string{"hi,<nil>", ",x", "!,<nil>"} // '!' is no record: 'u' only
		if in[0] == 'd' {
			got, want = got[:2], want[:2]
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: reads %q, want %q", in, got, want)
		}
	}
}

type scriptRead struct {
	b   string
	err error
}

// scriptStream is a stream whose Reads return reads, one each, then io.EOF.
type scriptStream struct {
	bytesStream
	reads []scriptRead
}

func (s *scriptStream) Read(b []byte) (int, error) {
	if len(s.reads) == 0 {
		return 0, io.EOF
	}
	r := s.reads[0]
	s.reads = s.reads[1:]
	return copy(b, r.b), r.err
}

// pushStream is a relay that writes itself out, as a server's mux.Stream
// does (pushed from its link's read loop): it says whether it was asked.
type pushStream struct {
	bytesStream
	pushed bool
}

func (s *pushStream) WriteTo(w io.Writer) (int64, error) {
	s.pushed = true
	return io.Copy(w, struct{ io.Reader }{&s.bytesStream})
}

// TestMoveWriteTo: WriteTo gives the records' bytes, then those read
// ahead past a 'u', and hands the rest to a relay that writes itself
// out; a relay that does not, or a session still framed, is read.
func TestMoveWriteTo(t *testing.T) {
	in := "d\x00\x02hiu" + "raw bytes after the u record, " + strings.Repeat("and more ", 100)
	want := "hi" + in[6:]
	for _, tc := range []struct {
		name   string
		chunk  int
		push   bool
		pushed bool
	}{
		{"push, all read ahead", 1 << 20, true, true}, // its WriteTo finds the end
		{"push, some read ahead", 40, true, true},
		{"push, split records", 0, true, true},
		{"no push", 40, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := bytesStream{r: bytes.NewReader([]byte(in)), chunk: tc.chunk}
			var relay stream = &bs
			ps := &pushStream{bytesStream: bs}
			if tc.push {
				relay = ps
			}
			m := newMoveConn(relay, nil, nil)
			m.setPunch(nil, errors.New("no path"))
			var got bytes.Buffer
			n, err := m.WriteTo(&got)
			if err != nil || got.String() != want || n != int64(len(want)) {
				t.Fatalf("WriteTo: %d, %v, %q; want %d, nil, %q", n, err, got.String(), len(want), want)
			}
			if ps.pushed != tc.pushed {
				t.Errorf("the relay's WriteTo was called: %v, want %v", ps.pushed, tc.pushed)
			}
		})
	}
}

// signalWriter keeps what is written, and signals once it holds want.
type signalWriter struct {
	mu   sync.Mutex // guards b, done
	b    []byte
	want string
	done bool
	got  chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if !w.done && string(w.b) == w.want {
		w.done = true
		close(w.got)
	}
	return len(p), nil
}

// TestMoveWriteToEnds: a WriteTo handed to a relayed mux.Stream (after
// 'u') ends with an error, not a clean end, at Close, Abort, a read
// deadline set on the session, and a cut link; and its count is the bytes
// written.
func TestMoveWriteToEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(m *moveConn, client *mux.Session)
		want error
	}{
		{"close", func(m *moveConn, _ *mux.Session) { m.Close() }, net.ErrClosed},
		{"abort", func(m *moveConn, _ *mux.Session) { m.Abort(errors.New("test abort")) }, nil},
		{"deadline", func(m *moveConn, _ *mux.Session) { m.SetReadDeadline(time.Now().Add(-time.Second)) }, os.ErrDeadlineExceeded},
		{"cut", func(_ *moveConn, client *mux.Session) { client.Abort(errors.New("test cut")) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			client := mux.New(cc, yamuxlink.NewFramer(cc, cc, yamuxlink.DefaultWindow, true), yamuxlink.Config(yamuxlink.DefaultWindow))
			server := mux.New(sc, yamuxlink.NewFramer(sc, sc, yamuxlink.DefaultWindow, false), yamuxlink.Config(yamuxlink.DefaultWindow))
			defer func() {
				done := make(chan struct{})
				go func() { server.Close(); close(done) }()
				client.Close()
				<-done
			}()
			accepted := make(chan *mux.Stream, 1)
			go func() {
				st, _ := server.Accept()
				accepted <- st
			}()
			a, err := client.Open(t.Context(), "", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Write([]byte("d\x00\x02hiu")); err != nil {
				t.Fatal(err)
			}
			b := <-accepted
			if b == nil {
				t.Fatal("Accept failed")
			}
			m := newMoveConn(b, nil, nil)
			defer m.Close()
			m.setPunch(nil, errors.New("no path"))
			w := &signalWriter{want: "hi" + "after u", got: make(chan struct{})}
			type result struct {
				n   int64
				err error
			}
			res := make(chan result, 1)
			go func() {
				n, err := m.WriteTo(w)
				res <- result{n, err}
			}()
			if _, err := a.Write([]byte("after u")); err != nil {
				t.Fatal(err)
			}
			<-w.got
			tc.end(m, client)
			r := <-res
			if r.err == nil || tc.want != nil && !errors.Is(r.err, tc.want) {
				t.Errorf("WriteTo: %v, want an error (%v)", r.err, tc.want)
			}
			if r.n != int64(len(w.want)) {
				t.Errorf("WriteTo: %d bytes, want %d", r.n, len(w.want))
			}
		})
	}
}

// TestMoveReportOutsideLock: the report of the move (onResult: an event
// handler, a log) runs once the call that completed the move has let go
// of its direction's lock, so a slow one holds up no other Write.
func TestMoveReportOutsideLock(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	a, b := movedOneWay(t, func(direct bool, err error) {
		if direct {
			close(entered)
			<-release
		}
	})
	defer b.Close()
	defer a.Close()
	// a's Write moves its direction too, and its report waits.
	first := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("2"))
		first <- err
	}()
	<-entered
	second := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("3"))
		second <- err
	}()
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // a guard: it returns at once
		close(release)
		t.Fatal("a Write waited for the report of the move made by another")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The first Write reports before it writes: the second may go
	// ahead of it, as concurrent Writes may.
	got := make([]byte, 2)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "23" && string(got) != "32" {
		t.Fatalf("b read %q, %v; want 23 or 32", got, err)
	}
}

// TestMoveReportWhileWriteBlocks: the report of the move does not wait
// for the rest of the call that made it: a Write that moves the session
// and then waits on the direct connection (its peer reads nothing yet)
// has reported the move already, as Direct says it.
func TestMoveReportWhileWriteBlocks(t *testing.T) {
	reported := make(chan bool, 1)
	a, b := movedOneWay(t, func(direct bool, err error) { reported <- direct })
	defer b.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(make([]byte, 64<<20)) // more than the sockets hold
		wrote <- err
	}()
	select {
	case direct := <-reported:
		if !direct {
			t.Error("the move was reported as no move")
		}
	case err := <-wrote:
		t.Fatalf("the Write returned (%v) before b read: it should wait", err)
	case <-time.After(10 * time.Second): // a guard: it comes at once
		t.Error("no report of the move while the Write that made it waits")
	}
	if !a.isDirect() {
		t.Error("a is not direct")
	}
	a.Close()
	<-wrote
}

// movedOneWay returns the two sides of a session through a DP, both
// punched, whose direction from b to a has moved (a has read b's first
// byte on the direct connection) and whose other has not yet; a reports
// its outcome to onResult.
func movedOneWay(t *testing.T, onResult func(direct bool, err error)) (a, b *moveConn) {
	t.Helper()
	ra, rb := dpRelay(t)
	da, db := tcpPair(t)
	a = newMoveConn(asStream(ra), nil, onResult)
	b = newMoveConn(asStream(rb), nil, nil)
	a.setPunch(da, nil)
	b.setPunch(db, nil)
	if _, err := b.Write([]byte("1")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := a.Read(buf); err != nil || string(buf[:n]) != "1" {
		t.Fatalf("a read %q, %v; want 1", buf[:n], err)
	}
	return a, b
}

// gateStream is a relay whose Write of 'm' puts the byte on the wire at
// once but returns only once Close has begun to end the relay (its write
// deadline or its close): the Write that sends 'm' is still under way
// when Close decides what it writes there.
type gateStream struct {
	stream
	sent   chan struct{} // closed once 'm' has gone out
	closer chan struct{} // closed at the first SetWriteDeadline, SetDeadline or Close
	once   sync.Once
}

func newGateStream(s stream) *gateStream {
	return &gateStream{stream: s, sent: make(chan struct{}), closer: make(chan struct{})}
}

func (g *gateStream) Write(b []byte) (int, error) {
	n, err := g.stream.Write(b)
	if len(b) == 1 && b[0] == recMoved {
		close(g.sent)
		<-g.closer
	}
	return n, err
}

func (g *gateStream) closing() { g.once.Do(func() { close(g.closer) }) }

func (g *gateStream) SetWriteDeadline(t time.Time) error {
	g.closing()
	return g.stream.SetWriteDeadline(t)
}

func (g *gateStream) SetDeadline(t time.Time) error {
	g.closing()
	return g.stream.SetDeadline(t)
}

func (g *gateStream) Close() error {
	g.closing()
	return g.stream.Close()
}

// TestMoveCloseWhileMoving: a Close that comes while a Write is sending
// 'm' still writes the report after it: the DP must not read a moved
// direction that ends unreported (it would cut the relay, blame the
// side, and leave its direct bytes uncounted).
func TestMoveCloseWhileMoving(t *testing.T) {
	ra, dpSide := tcpPair(t)
	da, db := tcpPair(t)
	defer dpSide.Close()
	defer db.Close()
	g := newGateStream(asStream(ra))
	a := newMoveConn(g, nil, nil)
	a.setPunch(da, nil)
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("hello"))
		wrote <- err
	}()
	<-g.sent
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	<-wrote // it may fail: Close ended the direct connection under it
	// Close ended the direct connection before the Write could use it.
	if got, err := io.ReadAll(db); err != nil || len(got) > 0 {
		t.Fatalf("the direct connection: %q, %v; want nothing and the end", got, err)
	}
	if got, err := io.ReadAll(dpSide); err != nil || string(got) != "m"+report(0) {
		t.Fatalf("the relay: %q, %v; want m, the report of 0 bytes and the end", got, err)
	}
}

// TestMoveCloseWhileMovingCounted: a Close that comes while the Write
// that completes the move is sending 'm' reports the move (onResult),
// and its report reaches the DP, which counts the session as moved and
// both sides' direct bytes, with no cut.
func TestMoveCloseWhileMovingCounted(t *testing.T) {
	r := newDPRelay(t)
	da, db := tcpPair(t)
	g := newGateStream(asStream(r.a))
	type result struct {
		direct bool
		err    error
	}
	results := make(chan result, 1)
	a := newMoveConn(g, nil, func(direct bool, err error) { results <- result{direct, err} })
	b := newMoveConn(asStream(r.b), nil, nil)
	a.setPunch(da, nil)
	b.setPunch(db, nil)
	if _, err := b.Write([]byte("1")); err != nil { // b's 'm', then 1 directly
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(a, buf); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("2")) // a's 'm': the session moves both ways
		wrote <- err
	}()
	<-g.sent
	a.Close()
	<-wrote
	if res := <-results; !res.direct || res.err != nil {
		t.Errorf("onResult(%v, %v), want the move", res.direct, res.err)
	}
	// b reads a's 'm' and the direct connection's end: a relay closed
	// with bytes unread would be reset, and take b's report with it.
	if got, err := io.ReadAll(b); err != nil || len(got) > 0 {
		t.Fatalf("b read %q, %v; want the end", got, err)
	}
	b.Close()
	if err := <-r.joined; err != nil {
		t.Fatalf("the DP's join: %v, want a clean end", err)
	}
	if st := r.dp.Stats(); st.DirectMoved != 1 || st.DirectRelayed != 0 || st.DirectBytes != 1 {
		t.Errorf("Stats: %d moved, %d relayed, %d direct bytes; want 1, 0, 1 (b's)", st.DirectMoved, st.DirectRelayed, st.DirectBytes)
	}
}

// TestMovePeerUnframedDropsDirect: a side whose punch succeeded but that
// has read the peer's 'u' closes its direct connection as soon as its own
// direction has settled on the relay too (its 'u' sent, or its end), not
// at Close: the descriptor and the NAT's mapping go, and the session
// carries on, on the relay. A punch that comes up once both directions
// have settled is closed at once.
func TestMovePeerUnframedDropsDirect(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("punched late %v", late), func(t *testing.T) {
			p := newMovePair(t, nil)
			p.b.setPunch(nil, errors.New("proof cut by b's deadline"))
			if _, err := p.b.Write([]byte("x")); err != nil { // 'u', then x
				t.Fatal(err)
			}
			if !late {
				p.a.setPunch(p.da, nil)
			}
			buf := make([]byte, 1)
			if _, err := io.ReadFull(p.a, buf); err != nil { // a reads 'u' and x
				t.Fatal(err)
			}
			if late {
				if err := p.a.CloseWrite(); err != nil { // framed, its punch under way
					t.Fatal(err)
				}
				p.a.setPunch(p.da, nil)
			} else if _, err := p.a.Write([]byte("y")); err != nil { // 'u', then y
				t.Fatal(err)
			}
			// a's direct connection is closed: its other end reads the end.
			p.db.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard: it comes at once
			if got, err := io.ReadAll(p.db); err != nil || len(got) > 0 {
				t.Fatalf("the direct connection: %q, %v; want nothing and its end", got, err)
			}
			if err := p.a.SetDeadline(time.Time{}); err != nil {
				t.Errorf("SetDeadline: %v", err)
			}
			if late {
				if got, err := io.ReadAll(p.b); err != nil || len(got) > 0 {
					t.Fatalf("b read %q, %v; want a's end", got, err)
				}
			} else if _, err := io.ReadFull(p.b, buf); err != nil || buf[0] != 'y' {
				t.Fatalf("b read %q, %v; want y, on the relay", buf, err)
			}
			if _, err := p.b.Write([]byte("z")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(p.a, buf); err != nil || buf[0] != 'z' {
				t.Fatalf("a read %q, %v; want z, on the relay", buf, err)
			}
		})
	}
}

// TestMoveCloseWhileMovingStuck: a Close that comes while the write of
// 'm' is stuck on a relay that does not drain (the peer reads nothing)
// returns within reportTimeout, and a deadline that the application sets
// meanwhile does not lift that bound; an Abort returns at once.
func TestMoveCloseWhileMovingStuck(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprintf("abort %v", abort), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ra, rb := net.Pipe() // nothing reads rb: a write of ra waits
				da, db := net.Pipe()
				defer rb.Close()
				defer db.Close()
				a := newMoveConn(asStream(ra), nil, nil)
				a.setPunch(da, nil)
				wrote := make(chan error, 1)
				go func() {
					_, err := a.Write([]byte("x"))
					wrote <- err
				}()
				synctest.Wait() // the Write is stuck on its 'm'
				start := time.Now()
				closed := make(chan struct{})
				go func() {
					if abort {
						a.Abort(errors.New("cut"))
					} else {
						a.Close()
					}
					close(closed)
				}()
				synctest.Wait()
				// Neither lifts Close's bound on the relay.
				a.SetWriteDeadline(time.Time{})
				a.SetDeadline(time.Now().Add(time.Hour))
				<-closed
				want := reportTimeout
				if abort {
					want = 0
				}
				if d := time.Since(start); d != want {
					t.Errorf("Close took %v, want %v", d, want)
				}
				if err := <-wrote; err == nil || !abort && !errors.Is(err, net.ErrClosed) {
					t.Errorf("the Write stuck on 'm': %v; want it to fail, with net.ErrClosed after Close", err)
				}
			})
		})
	}
}

// gatedConn is a direct connection whose Write, once the connection
// under it has returned, waits for gate before it returns: a Write that
// Close's end of the connection has woken but that has not yet counted
// its bytes.
type gatedConn struct {
	net.Conn
	gate chan struct{}
}

func (g *gatedConn) Write(b []byte) (int, error) {
	n, err := g.Conn.Write(b)
	<-g.gate
	return n, err
}

// gatedMove returns a moving session (in a synctest bubble) whose relay
// and direct connection are pipes: db is the direct connection's far
// end; a Write on the direct connection waits at gate once its bytes are
// taken, until the test closes gate; relayed gets all the relay carried
// once it ends. The pipes are closed when the test ends.
func gatedMove(t *testing.T) (a *moveConn, db net.Conn, gate chan struct{}, relayed chan string) {
	ra, dpSide := net.Pipe()
	da, db := net.Pipe()
	t.Cleanup(func() { dpSide.Close(); db.Close() })
	gate = make(chan struct{})
	a = newMoveConn(asStream(ra), nil, nil)
	a.setPunch(&gatedConn{Conn: da, gate: gate}, nil)
	relayed = make(chan string, 1)
	go func() {
		got, _ := io.ReadAll(dpSide)
		relayed <- string(got)
	}()
	return a, db, gate, relayed
}

// TestMoveCloseCountsWriteUnderWay: a Close that ends the direct
// connection under a Write waits for that Write to count what it wrote
// before it writes its report: the report counts exactly the bytes the
// connection took (here a pipe, whose peer read them).
func TestMoveCloseCountsWriteUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, db, gate, relayed := gatedMove(t)
		const took = 1000
		wrote := make(chan int, 1)
		go func() {
			n, _ := a.Write(make([]byte, 4*took)) // 'm', then on the direct connection
			wrote <- n
		}()
		// The peer reads took bytes, then nothing: the Write waits.
		if _, err := io.ReadFull(db, make([]byte, took)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		closed := make(chan struct{})
		go func() {
			a.Close()
			close(closed)
		}()
		synctest.Wait() // Close has ended the direct connection: the Write is at the gate
		close(gate)
		<-closed
		if n := <-wrote; n != took {
			t.Errorf("the Write wrote %d bytes, want %d", n, took)
		}
		if got, want := <-relayed, "m"+report(took); got != want {
			t.Errorf("the relay carried %q, want %q: the report counts the Write Close ended", got, want)
		}
	})
}

// TestMoveCloseWriteStuckInDirect: a Write that the end of its direct
// connection does not wake (a connection whose Close does not unblock
// its Write) holds Close up for half of reportTimeout: Close then writes
// its report, without the Write's bytes, within the rest, and returns.
func TestMoveCloseWriteStuckInDirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, db, gate, relayed := gatedMove(t)
		wrote := make(chan int, 1)
		go func() {
			n, _ := a.Write(make([]byte, 10)) // 'm', then on the direct connection
			wrote <- n
		}()
		if _, err := io.ReadFull(db, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the Write is at the gate, which only the test opens
		start := time.Now()
		a.Close()
		if d := time.Since(start); d != reportTimeout/2 {
			t.Errorf("Close took %v, want half of reportTimeout (%v): the report has the rest", d, reportTimeout/2)
		}
		if got, want := <-relayed, "m"+report(0); got != want {
			t.Errorf("the relay carried %q, want %q", got, want)
		}
		close(gate)
		if n := <-wrote; n != 10 {
			t.Errorf("the Write wrote %d bytes, want 10", n)
		}
	})
}

// TestMoveCloseCountsBlockedWrite: a Write blocked on a direct TCP
// connection whose peer does not read, and a Close: the DP counts
// (Stats.DirectBytes) exactly the bytes the peer reads, those the kernel
// took.
func TestMoveCloseCountsBlockedWrite(t *testing.T) {
	r := newDPRelay(t)
	da, db := tcpPair(t)
	a := newMoveConn(asStream(r.a), nil, nil)
	a.setPunch(da, nil)
	if _, err := a.Write([]byte("x")); err != nil { // 'm', then x directly
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(r.b, buf); err != nil || buf[0] != recMoved {
		t.Fatalf("the relay carried %q, %v; want m", buf, err)
	}
	wrote := make(chan int, 1)
	go func() {
		n, _ := a.Write(make([]byte, 64<<20)) // more than the sockets hold
		wrote <- n
	}()
	// x and the Write's first byte: the Write is under way. The kernel
	// takes what it holds; the Write waits for the rest.
	if _, err := io.ReadFull(db, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	n := <-wrote
	rest, err := io.Copy(io.Discard, db)
	if err != nil {
		t.Fatal(err)
	}
	r.b.Close()
	if err := <-r.joined; err != nil {
		t.Fatalf("the DP's join: %v, want a clean end", err)
	}
	if st := r.dp.Stats(); st.DirectBytes != uint64(2+rest) || int64(n) != 1+rest {
		t.Errorf("DirectBytes %d, the Write %d bytes; the peer read 2+%d", st.DirectBytes, n, rest)
	}
}

// closingStream is a relay that tells when a write of 'm' begins, and
// when Close sets its deadline on it: Close then waits for a write of it.
// It ignores that deadline, as a relay stuck past its deadlines would:
// only a cut (Abort) ends a write of it that the peer does not read.
type closingStream struct {
	stream
	moving  chan struct{}
	waiting chan struct{}
	once    sync.Once
}

func (c *closingStream) Write(b []byte) (int, error) {
	if len(b) == 1 && b[0] == recMoved {
		close(c.moving)
	}
	return c.stream.Write(b)
}

func (c *closingStream) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() {
		c.once.Do(func() { close(c.waiting) })
	}
	return nil
}

// TestMoveAbortWhileClosing: an Abort that comes while a Close waits for
// a relay that does not drain (for the write of 'm' under way, or for
// its report) cuts the relay at once and returns, and so does the Close,
// with no report delivered. The relay ignores Close's deadline, so that
// only the Abort can end Close's wait: the timer is a failsafe, not the
// measure. (Not in synctest: an Abort that waited for Close's sync.Once
// would not be durably blocked, and the bubble's time would not move.)
func TestMoveAbortWhileClosing(t *testing.T) {
	for _, waiting := range []string{"moving", "reporting"} {
		t.Run(waiting, func(t *testing.T) {
			ra, rb := net.Pipe() // a write of ra waits for its read
			da, db := net.Pipe()
			defer rb.Close()
			defer db.Close()
			relay := &closingStream{stream: asStream(ra), moving: make(chan struct{}), waiting: make(chan struct{})}
			a := newMoveConn(relay, nil, nil)
			a.setPunch(da, nil)
			wrote := make(chan error, 1)
			go func() {
				_, err := a.Write([]byte("x"))
				wrote <- err
			}()
			if waiting == "reporting" {
				// 'm' goes out, then x directly; the relay then takes
				// nothing more.
				buf := make([]byte, 1)
				if _, err := io.ReadFull(rb, buf); err != nil || buf[0] != recMoved {
					t.Fatalf("the relay carried %q, %v; want m", buf, err)
				}
				if _, err := io.ReadFull(db, buf); err != nil || buf[0] != 'x' {
					t.Fatalf("the direct connection carried %q, %v; want x", buf, err)
				}
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
			} else {
				<-relay.moving
			}
			closed := make(chan struct{})
			go func() {
				a.Close()
				close(closed)
			}()
			<-relay.waiting // Close waits for the relay
			aborted := make(chan struct{})
			go func() {
				a.Abort(errors.New("cut"))
				close(aborted)
			}()
			bound := time.NewTimer(10 * time.Second) // a failsafe: without the cut, Close would wait for ever
			defer bound.Stop()
			for _, c := range []struct {
				what string
				done chan struct{}
			}{{"Abort", aborted}, {"Close", closed}} {
				select {
				case <-c.done:
				case <-bound.C:
					t.Fatalf("%s still waits: the Abort did not end Close's wait on the relay", c.what)
				}
			}
			if waiting == "moving" {
				if err := <-wrote; err == nil {
					t.Error("the Write stuck on 'm' succeeded, want an error")
				}
			}
			if got, err := io.ReadAll(rb); len(got) > 0 {
				t.Errorf("the relay carried %q (%v) after the Abort, want nothing", got, err)
			}
		})
	}
}

// TestMoveCloseDoesNotWaitForTheEvent: Close returns while a Write is
// still reporting the move (onResult: the server's EventDirect, a log
// handler) and that report has not returned: the outcome is reported
// once, by that Write, and Close waits for no user callback.
func TestMoveCloseDoesNotWaitForTheEvent(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	a, b := movedOneWay(t, func(direct bool, err error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	defer b.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("2")) // moves a's direction: reports the move
		wrote <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	guard := time.NewTimer(10 * time.Second) // a guard: Close returns at once
	defer guard.Stop()
	select {
	case <-closed:
	case <-guard.C:
		t.Error("Close waited for the report of the move that a Write is making")
	}
	close(release)
	<-wrote
	if n := calls.Load(); n != 1 {
		t.Errorf("onResult called %d times, want once", n)
	}
}

// sizeStream is a relay that does not write itself out (a client's TCP
// connection to the DP) and keeps the largest buffer a Read was given.
type sizeStream struct {
	bytesStream
	largest int
}

func (s *sizeStream) Read(b []byte) (int, error) {
	s.largest = max(s.largest, len(b))
	return s.bytesStream.Read(b)
}

// TestMoveWriteToUnframedBuffer: a session that stays on a relay that does
// not write itself out (its punch failed, 'u') is read on through WriteTo
// with a large buffer, as one that was never brokered, not through the
// small one of its records.
func TestMoveWriteToUnframedBuffer(t *testing.T) {
	in := "d\x00\x02hiu" + strings.Repeat("raw bytes after the u record ", 10000)
	s := &sizeStream{bytesStream: bytesStream{r: bytes.NewReader([]byte(in)), chunk: 1 << 20}}
	m := newMoveConn(s, nil, nil)
	m.setPunch(nil, errors.New("no path"))
	defer m.Close()
	var got bytes.Buffer
	if _, err := m.WriteTo(&got); err != nil || got.String() != "hi"+in[6:] {
		t.Fatalf("WriteTo: %v, %d bytes; want nil, %d", err, got.Len(), len(in)-4)
	}
	if s.largest < 32<<10 {
		t.Errorf("the relay was read through at most %d bytes, want 32 KiB once unframed", s.largest)
	}
}
