package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// newTestLoop starts a Loop, closed when the test ends.
func newTestLoop(t *testing.T) *Loop {
	t.Helper()
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// relayPairs returns the ends of a session through a relay: two TCP
// pairs, the client's end and the relay's a, the relay's b and the
// server's end; the peers' calls fail after a minute rather than hang.
func relayPairs(t *testing.T) (client, a, b, server *net.TCPConn) {
	t.Helper()
	client, a = flowtest.TCPPair(t)
	b, server = flowtest.TCPPair(t)
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))
	return client, a, b, server
}

type joinResult struct {
	Stats
	err error
}

// loopJoin runs l.Join(a, b, count) on a goroutine of its own.
func loopJoin(l *Loop, a, b net.Conn, count func(bool, int)) <-chan joinResult {
	joined := make(chan joinResult, 1)
	go func() {
		st, err := l.Join(a, b, count)
		joined <- joinResult{st, err}
	}()
	return joined
}

// counter2 counts each direction's bytes, and the largest piece from a
// to b.
type counter2 struct {
	n        [2]atomic.Int64 // a to b, b to a
	maxPiece atomic.Int64
}

func (c *counter2) count(aToB bool, n int) {
	if !aToB {
		c.n[1].Add(int64(n))
		return
	}
	c.n[0].Add(int64(n))
	if int64(n) > c.maxPiece.Load() {
		c.maxPiece.Store(int64(n))
	}
}

// exchange sends msg from one end to the other, and checks it arrives.
func exchange(t testing.TB, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(from, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(to, got); err != nil || string(got) != msg {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
}

// TestLoopEcho relays many small requests and answers through a Loop,
// then the half-closes of both: every byte arrives, counted, and Join
// ends cleanly.
func TestLoopEcho(t *testing.T) {
	l := newTestLoop(t)
	client, a, b, server := relayPairs(t)
	var c counter2
	joined := loopJoin(l, a, b, c.count)
	var up, down int64
	for i := range 1000 {
		req, ans := fmt.Sprintf("request %d", i), fmt.Sprintf("answer %d!", i)
		exchange(t, client, server, req)
		exchange(t, server, client, ans)
		up, down = up+int64(len(req)), down+int64(len(ans))
	}
	client.CloseWrite()
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("server read %d, %v after the client's half-close; want 0, EOF", n, err)
	}
	server.CloseWrite()
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v after the server's half-close; want 0, EOF", n, err)
	}
	r := <-joined
	if r.err != nil {
		t.Fatalf("Join = %v", r.err)
	}
	if r.AtoB != up || r.BtoA != down || c.n[0].Load() != up || c.n[1].Load() != down {
		t.Errorf("Join moved %d and %d bytes, counted %d and %d; want %d and %d",
			r.AtoB, r.BtoA, c.n[0].Load(), c.n[1].Load(), up, down)
	}
}

// TestLoopHalfClose: a peer that sends its request and half-closes gets
// its answer and then the end, from either side.
func TestLoopHalfClose(t *testing.T) {
	for _, first := range []string{"client", "server"} {
		t.Run(first, func(t *testing.T) {
			l := newTestLoop(t)
			client, a, b, server := relayPairs(t)
			joined := loopJoin(l, a, b, nil)
			asker, answerer := client, server
			if first == "server" {
				asker, answerer = server, client
			}
			exchange(t, asker, answerer, "hello") // in the loop
			io.WriteString(asker, "request")
			asker.CloseWrite()
			got, err := io.ReadAll(answerer)
			if err != nil || string(got) != "request" {
				t.Fatalf("the answerer read %q, %v; want %q and the end", got, err, "request")
			}
			io.WriteString(answerer, "answer")
			answerer.Close()
			got, err = io.ReadAll(asker)
			if err != nil || string(got) != "answer" {
				t.Fatalf("the asker read %q, %v after its half-close; want %q and the end", got, err, "answer")
			}
			if r := <-joined; r.err != nil {
				t.Fatalf("Join = %v", r.err)
			}
		})
	}
}

// TestLoopReset: a reset of either peer of a session in the loop reaches
// the other as a reset, and Join blames the side that was reset.
func TestLoopReset(t *testing.T) {
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			l := newTestLoop(t)
			client, a, b, server := relayPairs(t)
			joined := loopJoin(l, a, b, nil)
			exchange(t, client, server, "request")
			exchange(t, server, client, "answer")
			gone, other, want := client, server, "a"
			if side == "server" {
				gone, other, want = server, client, "b"
			}
			gone.SetLinger(0)
			gone.Close()
			if _, err := io.ReadAll(other); !tcpreset.Is(err) {
				t.Errorf("the %s's peer read %v after its reset, want a reset", side, err)
			}
			r := <-joined
			if !Cut(r.err) {
				t.Errorf("Join = %v, want a cut", r.err)
			}
			if got := failedSide(r.Stats); got != want {
				t.Errorf("Join blamed %s (FailedAtoB %v, FailedWrite %v), want %s", got, r.FailedAtoB, r.FailedWrite, want)
			}
		})
	}
}

// loopAnswerThenCut is answerThenCut for a Loop's session, freed by
// the Loop's Close.
func loopAnswerThenCut(t *testing.T, l *Loop, client *net.TCPConn, joined <-chan joinResult, want string) {
	t.Helper()
	answerThenCut(t, client, func() error { return (<-joined).err }, func() { l.Close() }, want)
}

// TestLoopResetBehindData: a server that answered and reset before the
// session came to the loop is cut at the client after its answer.
func TestLoopResetBehindData(t *testing.T) {
	l := newTestLoop(t)
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	if _, err := server.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	takeReset(t, b)
	joined := loopJoin(l, a, b, nil)
	loopAnswerThenCut(t, l, client, joined, "answer")
}

// TestLoopAnswerThenReset: a server that answers and resets at once,
// both waiting in the relay's socket while the loop is busy (held in
// count), is cut at the client after its answer.
func TestLoopAnswerThenReset(t *testing.T) {
	l := newTestLoop(t)
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	// A second descriptor of b's socket, to see it take the reset once
	// the loop has it; closed before the loop goes on, so that the
	// loop's close is the socket's.
	obs, err := b.File()
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	held, release := make(chan struct{}), make(chan struct{})
	pieces := 0
	joined := loopJoin(l, a, b, func(aToB bool, _ int) {
		if !aToB {
			pieces++ // the loop's goroutine alone
			if pieces == 2 {
				close(held)
				<-release
			}
		}
	})
	exchange(t, server, client, "hi ")
	if _, err := server.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	<-held // the loop wrote "hello " and waits in count
	if _, err := server.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	rc, err := obs.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() {
		reset := false
		rc.Control(func(fd uintptr) { reset = tcpreset.WasResetFD(int(fd)) })
		if reset {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay's socket did not take the server's reset within a minute")
		}
	}
	obs.Close()
	close(release)
	loopAnswerThenCut(t, l, client, joined, "hello answer")
}

// fill writes the pattern to c from offset 0 until its socket takes no
// more now, and returns how much it wrote.
func fill(t *testing.T, c *net.TCPConn, p *flowtest.Pattern) int64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	var werr error
	rc.Write(func(fd uintptr) bool {
		for {
			k, err := syscall.Write(int(fd), p.At(n, 4096))
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				if err != syscall.EAGAIN {
					werr = err
				}
				return true
			}
			n += int64(k)
		}
	})
	if werr != nil {
		t.Fatal(werr)
	}
	return n
}

// TestLoopBulk sends 64 MiB of the pattern through a Loop's session:
// the burst leaves the loop and is spliced, and arrives intact, counted,
// with the half-closes after it. With a slow reader first, small pieces
// go first to a peer that reads nothing (a StalledPair: more of them
// than its socket holds): the loop's writes find no room, and the
// pieces wait in the loop while their source is not read, until the
// peer reads them all; then the burst goes the other way (a window
// under the loopback's MSS would move it at the pace of window probes).
func TestLoopBulk(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow %v", slow), func(t *testing.T) {
			const total = 64 << 20
			l := newTestLoop(t)
			p := flowtest.NewPattern()
			client, a := flowtest.TCPPair(t)
			var b, server *net.TCPConn
			if slow {
				b, server = flowtest.StalledPair(t)
			} else {
				b, server = flowtest.TCPPair(t)
			}
			client.SetDeadline(time.Now().Add(time.Minute))
			server.SetDeadline(time.Now().Add(time.Minute))
			var c counter2
			joined := loopJoin(l, a, b, c.count)
			// The burst from src to dst, and a short answer back.
			src, dst, small := client, server, int64(0)
			if slow {
				small = 50 * 1000
				piece := bytes.Repeat([]byte("x"), 1000)
				for range 50 {
					if _, err := client.Write(piece); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := io.ReadFull(server, make([]byte, small)); err != nil {
					t.Fatal(err)
				}
				src, dst = server, client
			}
			sent := make(chan error, 1)
			go func() {
				for off := int64(0); off < total; {
					k, err := src.Write(p.At(off, int(min(flowtest.MaxPiece, total-off))))
					off += int64(k)
					if err != nil {
						sent <- err
						return
					}
				}
				sent <- src.CloseWrite()
			}()
			n, err := flowtest.ReadAll(dst, p, nil)
			if err != nil || n != total {
				t.Fatalf("read %d bytes and %v, want %d and the end", n, err, total)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			io.WriteString(dst, "done!")
			dst.CloseWrite()
			got, err := io.ReadAll(src)
			if err != nil || string(got) != "done!" {
				t.Fatalf("read %q, %v; want %q and the end", got, err, "done!")
			}
			r := <-joined
			if r.err != nil {
				t.Fatalf("Join = %v", r.err)
			}
			up, down := int64(total), int64(5)
			if slow {
				up, down = small+5, total
			}
			if r.AtoB != up || r.BtoA != down || c.n[0].Load() != up || c.n[1].Load() != down {
				t.Errorf("Join moved %d and %d bytes, counted %d and %d; want %d and %d",
					r.AtoB, r.BtoA, c.n[0].Load(), c.n[1].Load(), up, down)
			}
			if !slow && c.maxPiece.Load() <= smallSize {
				t.Errorf("the burst was counted in pieces of at most %d bytes: copied through the %d-byte buffer, not spliced", c.maxPiece.Load(), smallSize)
			}
		})
	}
}

// TestLoopSourceResetWhileHeld: a server that resets while the loop
// holds its bytes for a client that reads nothing (its source not read
// meanwhile) ends the session at once, with a cut, before the client
// reads: nothing is held until the client reads or goes.
func TestLoopSourceResetWhileHeld(t *testing.T) {
	l := newTestLoop(t)
	p := flowtest.NewPattern()
	local, app := flowtest.StalledPair(t)
	srvLocal, srv := flowtest.TCPPair(t)
	fill(t, local, p)
	joined := loopJoin(l, local, srvLocal, nil)
	for range 20 {
		if _, err := srv.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
			t.Fatal(err)
		}
	}
	srv.SetLinger(0)
	srv.Close()
	select {
	case r := <-joined:
		if !Cut(r.err) {
			t.Errorf("Join ended with %v after the source's reset, want a cut", r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Join did not end within a minute of the source's reset")
	}
	app.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(io.Discard, app); !tcpreset.Is(err) {
		t.Errorf("the client read %v after the source's reset, want a reset", err)
	}
}

// aheadConn is a TCP connection that read bytes ahead of its reader
// (Buffered), and carries the rest as they are once those are taken.
type aheadConn struct {
	*net.TCPConn
	ahead []byte
	taken bool
}

func (c *aheadConn) TakeBuffered() []byte {
	c.taken = true
	return c.ahead
}

func (c *aheadConn) Unwrap() *net.TCPConn {
	if !c.taken {
		return nil
	}
	return c.TCPConn
}

// TestLoopWritesAheadFirst: bytes a side read ahead of its reader reach
// the other side before the rest, counted.
func TestLoopWritesAheadFirst(t *testing.T) {
	l := newTestLoop(t)
	client, a, b, server := relayPairs(t)
	var c counter2
	joined := loopJoin(l, &aheadConn{TCPConn: a, ahead: []byte("ahead ")}, b, c.count)
	io.WriteString(client, "rest")
	client.CloseWrite()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "ahead rest" {
		t.Fatalf("the server read %q, %v; want %q and the end", got, err, "ahead rest")
	}
	server.Close()
	r := <-joined
	if r.err != nil || r.AtoB != 10 || c.n[0].Load() != 10 {
		t.Errorf("Join = %v, moved %d bytes, counted %d; want nil and 10", r.err, r.AtoB, c.n[0].Load())
	}
}

// TestLoopGivesBackAhead: a side that turns out to be no TCP connection
// once its bytes read ahead are taken (a net.Pipe holding some: givenBack
// is such a Buffered side too) goes to the package's Join, which writes
// those bytes first all the same.
func TestLoopGivesBackAhead(t *testing.T) {
	l := newTestLoop(t)
	client, a := net.Pipe()
	b, server := flowtest.TCPPair(t)
	server.SetDeadline(time.Now().Add(time.Minute))
	joined := loopJoin(l, giveBack(a, []byte("ahead ")), b, nil)
	go func() {
		io.WriteString(client, "rest")
		client.Close()
	}()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "ahead rest" {
		t.Fatalf("the server read %q, %v; want %q and the end", got, err, "ahead rest")
	}
	server.Close()
	if r := <-joined; r.err != nil || r.AtoB != 10 {
		t.Errorf("Join = %v, moved %d bytes; want nil and 10", r.err, r.AtoB)
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len = %d: the loop took a pipe", n)
	}
}

// TestLoopManySessions relays 200 sessions at once through one Loop,
// each with requests and answers and its half-closes.
func TestLoopManySessions(t *testing.T) {
	const n = 200
	l := newTestLoop(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		client, a, b, server := relayPairs(t)
		wg.Go(func() {
			if _, err := l.Join(a, b, nil); err != nil {
				errs <- fmt.Errorf("session %d: Join = %v", i, err)
			}
		})
		wg.Go(func() {
			buf := make([]byte, 64)
			for j := range 20 {
				req := fmt.Sprintf("session %d request %d", i, j)
				if _, err := io.WriteString(client, req); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(server, buf[:len(req)]); err != nil || string(buf[:len(req)]) != req {
					errs <- fmt.Errorf("session %d: the server read %q, %v; want %q", i, buf[:len(req)], err, req)
					return
				}
				if _, err := server.Write(buf[:len(req)]); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(client, buf[:len(req)]); err != nil || string(buf[:len(req)]) != req {
					errs <- fmt.Errorf("session %d: the client read %q, %v; want %q", i, buf[:len(req)], err, req)
					return
				}
			}
			client.CloseWrite()
			if _, err := io.ReadAll(server); err != nil {
				errs <- err
			}
			server.Close()
			if _, err := io.ReadAll(client); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLoopClose: Close cuts every session in the loop (each Join
// returns ErrLoopClosed, both peers read a reset) and stops the loop;
// Joins racing Close end too, one way or the other; a Join after Close
// is the package's Join. goleak checks that nothing is left.
func TestLoopClose(t *testing.T) {
	const n = 20
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	type session struct {
		client, server *net.TCPConn
		joined         <-chan joinResult
	}
	var in, racing []session
	for range n {
		client, a, b, server := relayPairs(t)
		s := session{client, server, loopJoin(l, a, b, nil)}
		exchange(t, client, server, "in the loop")
		in = append(in, s)
	}
	for range n {
		client, a, b, server := relayPairs(t)
		racing = append(racing, session{client, server, loopJoin(l, a, b, nil)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Close() // twice is fine
	for i, s := range in {
		if r := <-s.joined; !errors.Is(r.err, ErrLoopClosed) {
			t.Errorf("session %d: Join = %v, want ErrLoopClosed", i, r.err)
		}
		for _, c := range []*net.TCPConn{s.client, s.server} {
			if _, err := c.Read(make([]byte, 1)); !tcpreset.Is(err) {
				t.Errorf("session %d: a peer read %v after Close, want a reset", i, err)
			}
		}
	}
	for _, s := range racing {
		s.client.Close()
		s.server.Close()
		<-s.joined
	}

	// After Close: the package's Join.
	client, a, b, server := relayPairs(t)
	joined := loopJoin(l, a, b, nil)
	exchange(t, client, server, "after Close")
	exchange(t, server, client, "still relayed")
	client.CloseWrite()
	server.CloseWrite()
	if r := <-joined; r.err != nil {
		t.Errorf("Join after Close = %v", r.err)
	}
}

// TestLoopNil: a nil Loop's Join is the package's Join, and its Close
// does nothing.
func TestLoopNil(t *testing.T) {
	var l *Loop
	client, a, b, server := relayPairs(t)
	joined := loopJoin(l, a, b, nil)
	exchange(t, client, server, "request")
	exchange(t, server, client, "answer")
	client.CloseWrite()
	server.CloseWrite()
	if r := <-joined; r.err != nil {
		t.Errorf("Join = %v", r.err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// TestLoopHeldAfterBothEnds: a client whose session's other direction
// has ended (the server half-closed first) sends more than the server,
// reading nothing yet, takes, and half-closes: its socket at the relay
// is then shut both ways while the loop holds its bytes (a hang-up that
// epoll reports at every wait, which must not spin the loop). Once the
// server reads, every byte and the end arrive.
func TestLoopHeldAfterBothEnds(t *testing.T) {
	l := newTestLoop(t)
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.StalledPair(t)
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))
	joined := loopJoin(l, a, b, nil)
	server.CloseWrite()
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v after the server's half-close; want 0, EOF", n, err)
	}
	want := bytes.Repeat([]byte("0123456789"), 5000)
	for i := 0; i < len(want); i += 1000 {
		if _, err := client.Write(want[i : i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	client.CloseWrite()
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the server read %d bytes and %v, want the %d sent and the end", len(got), err, len(want))
	}
	if r := <-joined; r.err != nil {
		t.Fatalf("Join = %v", r.err)
	}
}

// TestLoopCloseCutsABurst: Close cuts a session that left the loop with
// a burst (its connections are Join's own since: the caller's Close
// would not reach them), as it cuts those in the loop.
func TestLoopCloseCutsABurst(t *testing.T) {
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	joined := make(chan joinResult, 1)
	client, server, sent := midBurst(t, func(a, b *net.TCPConn) {
		st, err := l.Join(a, b, nil)
		joined <- joinResult{st, err}
	})
	l.Close()
	if _, err := io.Copy(io.Discard, server); !tcpreset.Is(err) {
		t.Errorf("the server read %v after Close, want a reset", err)
	}
	if err := <-sent; err == nil {
		t.Error("the client's 64 MiB write succeeded although Close cut its session")
	}
	client.Close()
	if r := <-joined; !errors.Is(r.err, ErrLoopClosed) {
		t.Errorf("Join = %v, want ErrLoopClosed", r.err)
	}
}

// TestLoopIdleHoldsOneGoroutine: a session in the loop holds its Join's
// goroutine only, waiting for the session's end (Join's own holds one
// per direction, or one and a stream's).
func TestLoopIdleHoldsOneGoroutine(t *testing.T) {
	const n = 50
	l := newTestLoop(t)
	before := runtime.NumGoroutine()
	var ends []*net.TCPConn
	var joins []<-chan joinResult
	for range n {
		client, a, b, server := relayPairs(t)
		joins = append(joins, loopJoin(l, a, b, nil))
		exchange(t, client, server, "request")
		exchange(t, server, client, "answer")
		ends = append(ends, client, server)
	}
	if grown := runtime.NumGoroutine() - before; grown > n+4 {
		t.Errorf("%d idle sessions in the loop hold %d goroutines more, want at most %d (one each)", n, grown, n+4)
	}
	for _, c := range ends {
		c.CloseWrite()
	}
	for _, j := range joins {
		if r := <-j; r.err != nil {
			t.Errorf("Join = %v", r.err)
		}
	}
}

// TestLoopJoinContext: the end of JoinContext's ctx cuts its session,
// which a Close of the caller's connections would not reach: in the
// loop, after a burst, and before the loop took it (a ctx already
// done). Both peers read a reset, Join returns ctx's cause, and the
// other sessions go on.
func TestLoopJoinContext(t *testing.T) {
	l := newTestLoop(t)
	why := errors.New("the policy no longer allows it")
	join := func(ctx context.Context, a, b net.Conn) <-chan joinResult {
		joined := make(chan joinResult, 1)
		go func() {
			st, err := l.JoinContext(ctx, a, b, nil)
			joined <- joinResult{st, err}
		}()
		return joined
	}
	wantCut := func(what string, r joinResult, peers ...*net.TCPConn) {
		t.Helper()
		if !errors.Is(r.err, why) {
			t.Errorf("%s: Join = %v, want the cause %v", what, r.err, why)
		}
		for _, c := range peers {
			if _, err := io.Copy(io.Discard, c); !tcpreset.Is(err) {
				t.Errorf("%s: a peer read %v after the cut, want a reset", what, err)
			}
		}
	}

	// Another session, which goes on.
	otherC, a := flowtest.TCPPair(t)
	b, otherS := flowtest.TCPPair(t)
	otherC.SetDeadline(time.Now().Add(time.Minute))
	otherS.SetDeadline(time.Now().Add(time.Minute))
	other := join(context.Background(), a, b)
	exchange(t, otherC, otherS, "before")

	t.Run("in the loop", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		client, a, b, server := relayPairs(t)
		joined := join(ctx, a, b)
		exchange(t, client, server, "request")
		if n := l.Len(); n != 2 {
			t.Errorf("Len = %d, want 2", n)
		}
		cancel(why)
		wantCut("in the loop", <-joined, client, server)
	})
	t.Run("after a burst", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		joined := make(chan joinResult, 1)
		client, server, sent := midBurst(t, func(a, b *net.TCPConn) {
			st, err := l.JoinContext(ctx, a, b, nil)
			joined <- joinResult{st, err}
		})
		cancel(why)
		if _, err := io.Copy(io.Discard, server); !tcpreset.Is(err) {
			t.Errorf("the server read %v after the cut, want a reset", err)
		}
		if err := <-sent; err == nil {
			t.Error("the client's 64 MiB write succeeded although its session was cut")
		}
		client.Close()
		wantCut("after a burst", <-joined)
	})
	t.Run("done before", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(why)
		client, a, b, server := relayPairs(t)
		wantCut("done before", <-join(ctx, a, b), client, server)
	})

	exchange(t, otherC, otherS, "after")
	exchange(t, otherS, otherC, "still")
	otherC.CloseWrite()
	otherS.CloseWrite()
	if r := <-other; r.err != nil {
		t.Errorf("the other session: Join = %v", r.err)
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len = %d after every Join returned", n)
	}
}

// TestLoopZeroValue: a Loop's zero value starts at its first Join of two
// TCP connections, and its Close stops it then (goleak); closed before
// any Join, it starts none, and relays as the package's Join.
func TestLoopZeroValue(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		var l Loop
		if closeFirst {
			l.Close()
		}
		client, a, b, server := relayPairs(t)
		joined := loopJoin(&l, a, b, nil)
		exchange(t, client, server, "request")
		exchange(t, server, client, "answer")
		want := 1
		if closeFirst {
			want = 0
		}
		if n := l.Len(); n != want {
			t.Errorf("closed first %v: Len = %d, want %d", closeFirst, n, want)
		}
		client.CloseWrite()
		server.CloseWrite()
		if r := <-joined; r.err != nil {
			t.Errorf("closed first %v: Join = %v", closeFirst, r.err)
		}
		l.Close()
	}
}

// TestLoopWriteFailureSaysWrite: a destination whose own end was passed
// on already (it waits for nothing in the loop) and that is reset by its
// peer after the loop wrote to it fails the session as a write of it,
// in the error as in Stats: the loop sees it in the socket's SO_ERROR,
// not in a write of its own.
func TestLoopWriteFailureSaysWrite(t *testing.T) {
	l := newTestLoop(t)
	client, a, b, server := relayPairs(t)
	joined := loopJoin(l, a, b, nil)
	exchange(t, client, server, "request")
	client.CloseWrite()
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the server read %d, %v after the client's end; want 0, EOF", n, err)
	}
	client.Close() // nothing unread: a FIN was sent, a reset answers what comes
	if _, err := io.WriteString(server, "late"); err != nil {
		t.Fatal(err)
	}
	r := <-joined
	if !Cut(r.err) || r.FailedAtoB || !r.FailedWrite {
		t.Fatalf("Join = %v, FailedAtoB %v, FailedWrite %v; want a cut writing a", r.err, r.FailedAtoB, r.FailedWrite)
	}
	var oe *net.OpError
	if !errors.As(r.err, &oe) || oe.Op != "write" {
		t.Errorf("Join = %q, want a write's error (net.OpError, Op write): a failed to take b's bytes", r.err)
	}
}

// TestLoopLateCutSparesAnEndedSession: a JoinContext's ctx that ends as
// a session that left the loop after a burst ends cleanly, after its
// Join took it out of the Loop's books (handed) and found it not cut,
// must not reset its connections under the clean close that Join then
// makes: its peers would read a reset, and lose what their sockets
// still held, while Join reports a clean end. (cutOne is called here as
// the ctx's AfterFunc calls it, in that state.)
func TestLoopLateCutSparesAnEndedSession(t *testing.T) {
	l := newTestLoop(t)
	x, xPeer := flowtest.TCPPair(t)
	y, yPeer := flowtest.TCPPair(t)
	xPeer.SetDeadline(time.Now().Add(time.Minute))
	yPeer.SetDeadline(time.Now().Add(time.Minute))
	s := &loopSession{done: make(chan struct{})}
	l.mu.Lock()
	s.conns = [2]*net.TCPConn{x, y} // as handOff left them, out of l.handed
	l.mu.Unlock()
	l.cutOne(s, errors.New("the ctx ended"))
	// handOff's clean end: graceful, then Close.
	for _, c := range []*net.TCPConn{x, y} {
		graceful(c)
		c.Close()
	}
	for name, c := range map[string]*net.TCPConn{"x": xPeer, "y": yPeer} {
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("%s's peer read %v after a clean end, want the end", name, err)
		}
	}
}
