package relay

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// Only Linux tells a reset from the socket's state (resetWatch).

// TestJoinTCPBlockedWriteEndsWithTheSourceReset: a relay between two TCP
// connections whose copy to one side is blocked, that side reading
// nothing, ends at once when the source resets (a server that aborts
// its session: the TCP transport's data link), with a cut: the side that
// reads nothing is reset, and nothing is held until it reads or goes.
func TestJoinTCPBlockedWriteEndsWithTheSourceReset(t *testing.T) {
	for _, wait := range []string{"bulk", "small"} {
		t.Run(wait, func(t *testing.T) {
			local, app := flowtest.StalledPair(t)
			defer app.Close()
			defer app.Close()
			srvLocal, srv := flowtest.TCPPair(t)
			defer srv.Close()
			joined := make(chan error, 1)
			relayed := make(chan struct{}, 1)
			go func() {
				_, err := Join(local, srvLocal, func(aToB bool, _ int) {
					if !aToB {
						select {
						case relayed <- struct{}{}:
						default:
						}
					}
				})
				joined <- err
			}()
			wrote, stop := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(wrote)
				// Bursts are spliced; pieces under the relay's buffer,
				// each relayed before the next is sent, are written
				// from it.
				piece := 64 << 10
				if wait == "small" {
					piece = 100
				}
				buf := bytes.Repeat([]byte("x"), piece)
				for {
					if _, err := srv.Write(buf); err != nil {
						return
					}
					if wait == "small" {
						select {
						case <-relayed:
						case <-stop:
							return
						}
					}
				}
			}()
			fn := "rtcp/internal/mux.spliceOut"
			if wait == "small" {
				// A small write waits under the watch. (It may be
				// waiting for an acknowledgement, not for the client:
				// if that comes first, the relay reads the reset.)
				fn = "rtcp/internal/relay.(*resetWatch).write"
			}
			flowtest.WaitParked(t, time.Minute, fn, "IO wait")
			srv.SetLinger(0)
			srv.Close()
			close(stop)
			<-wrote
			select {
			case err := <-joined:
				if !Cut(err) {
					t.Errorf("Join ended with %v after the source's reset, want a cut", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Join did not end within a minute of the source's reset")
			}
			if _, err := io.Copy(io.Discard, app); err == nil {
				t.Error("the side that read nothing read a clean end after the source's reset, want a reset")
			}
		})
	}
}

// TestJoinTCPWatchIgnoresTheRelaysOwnFIN: the relay's own half-close of
// the source leaves the source's socket in state CLOSE once both FINs are
// acknowledged, which looks like a reset (tcpreset.WasReset). A client
// that sent its request, half-closed, and reads the answer slowly must
// get all of it and a clean end: the watch of a write waiting for that
// client must not take the clean close for a reset.
func TestJoinTCPWatchIgnoresTheRelaysOwnFIN(t *testing.T) {
	const size = 256 << 10
	local, app := flowtest.StalledPair(t)
	defer app.Close()
	srvLocal, srv := flowtest.TCPPair(t)
	defer srv.Close()
	// Room for the whole answer and the server's FIN behind it: the
	// relay's socket of the server is half-closed by the server first.
	srvLocal.SetReadBuffer(1 << 20)
	joined := make(chan error, 1)
	go func() {
		_, err := Join(local, srvLocal, nil)
		joined <- err
	}()
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	wrote := make(chan error, 1)
	go func() {
		_, err := srv.Write(want)
		if err == nil {
			err = srv.CloseWrite()
		}
		wrote <- err
	}()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	// The client is done sending; the relay passes its FIN on to the
	// server, whose socket at the relay then closes (state CLOSE) while
	// most of the answer still waits for the client.
	app.CloseWrite()
	if _, err := io.Copy(io.Discard, srv); err != nil {
		t.Fatalf("the server's read of the client's end: %v", err)
	}
	for !tcpreset.WasReset(srvLocal) {
		select {
		case err := <-joined:
			t.Fatalf("Join ended (%v) before the server's socket closed", err)
		default:
			runtime.Gosched()
		}
	}
	// The client reads a little, and stops again: the relay's next wait
	// for it is watched from its start to its end after CLOSE.
	got := make([]byte, 16<<10)
	if _, err := io.ReadFull(app, got); err != nil {
		t.Fatal(err)
	}
	waitWatch(t, joined)
	rest, err := io.ReadAll(app)
	got = append(got, rest...)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the client read %d bytes and %v, want all %d and a clean end", len(got), err, size)
	}
	select {
	case err := <-joined:
		if err != nil {
			t.Errorf("Join ended with %v, want a clean end", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Join did not end within a minute of both ends")
	}
}

// waitWatch waits until a resetWatch waits for its source (IO wait in
// run), or fails if Join ends first.
func waitWatch(t *testing.T, joined chan error) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for !flowtest.Parked(buf, "rtcp/internal/relay.(*resetWatch).run", "IO wait") {
		select {
		case err := <-joined:
			t.Fatalf("Join ended (%v) while a write waited for the client, want the wait watched", err)
		default:
			runtime.Gosched()
		}
	}
}

// TestJoinTCPResetBehindData: a server that answers and resets before
// the relay reads (the answer and the reset wait in the relay's socket)
// is cut at the client after its answer, not held: the read that takes
// the answer leaves nothing (TCP_INQ would say 0, there being no FIN),
// and the reset's wake-up, which the poller took before the copy began
// (pollOnce), wakes no wait of the copy's; only a read finds the reset.
func TestJoinTCPResetBehindData(t *testing.T) {
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	defer client.Close()
	if _, err := server.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	takeReset(t, b)
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, nil)
		joined <- err
	}()
	joinAnswerThenCut(t, client, a, b, joined, "answer")
}

// takeReset waits until b, the relay's side of a server that reset its
// connection, has taken the reset, and then until the runtime's poller
// has passed on its wake-up (pollOnce).
func takeReset(t *testing.T, b *net.TCPConn) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !tcpreset.WasReset(b); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the relay's socket did not take the server's reset within a minute")
		}
	}
	pollOnce(t)
}

// answerThenCut checks that the client of a relayed session reads want
// and then the server's reset, not a wait (10 s: the relay held the
// session; free then lets it go), and that the relay (joined: its
// error) ends with a cut.
func answerThenCut(t *testing.T, client *net.TCPConn, joined func() error, free func(), want string) {
	t.Helper()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if string(got) != want {
		t.Errorf("the client read %q, want %q", got, want)
	}
	if err == nil || isTimeout(err) {
		t.Errorf("the client read %v after the answer, want the server's reset passed on", err)
	}
	if isTimeout(err) {
		free()
	}
	if err := joined(); !Cut(err) {
		t.Errorf("Join ended with %v, want a cut", err)
	}
}

// joinAnswerThenCut is answerThenCut for Join(a, b), freed by closing
// both.
func joinAnswerThenCut(t *testing.T, client, a, b *net.TCPConn, joined chan error, want string) {
	t.Helper()
	answerThenCut(t, client, func() error { return <-joined }, func() { a.Close(); b.Close() }, want)
}

func isTimeout(err error) bool {
	ne, ok := err.(interface{ Timeout() bool })
	return ok && ne.Timeout()
}

// pollOnce makes the runtime's poller take what it has to tell of every
// socket (the wake-up of a read that waits): a read of another
// connection that waits ends only through it.
func pollOnce(t *testing.T) {
	x, y := flowtest.TCPPair(t)
	defer x.Close()
	defer y.Close()
	read := make(chan error, 1)
	go func() {
		_, err := x.Read(make([]byte, 1))
		read <- err
	}()
	flowtest.WaitParked(t, time.Minute, "net.(*conn).Read", "IO wait")
	if _, err := y.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// TestJoinTCPAnswerThenReset: a server that answers and aborts at once
// (writes, then closes with a reset) is cut at the client after its
// answer, however close behind the answer its reset comes. The reset
// raises no readiness of its own when it comes before the copy has
// taken the answer's (one wake for both), and TCP_INQ does not count
// it: a copy that waited without reading after the answer, as TCP_INQ's
// 0 left seemed to allow, held the session until the client went. The
// copy is held within its read of the server's socket (count) while the
// answer and the reset come, and the poller takes both (pollOnce).
func TestJoinTCPAnswerThenReset(t *testing.T) {
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	defer client.Close()
	held, release := make(chan struct{}), make(chan struct{})
	pieces := 0
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, func(aToB bool, _ int) {
			if !aToB { // b to a's goroutine alone
				pieces++
			}
			if !aToB && pieces == 2 {
				close(held)
				<-release
			}
		})
		joined <- err
	}()
	// A first piece, after which the copy waits, as between the
	// requests of a session: both directions then wait in copySmall.
	if _, err := server.Write([]byte("hi ")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() {
		n := runtime.Stack(buf, true)
		waiting := 0
		for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
			if bytes.Contains(g, []byte("relay.(*rawReader).copySmall(")) && bytes.Contains(g, []byte("[IO wait")) {
				waiting++
			}
		}
		if waiting == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the copies did not both come to wait within a minute")
		}
	}
	if _, err := server.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	<-held // the copy wrote "hello " and holds its read of b
	if _, err := server.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close()
	takeReset(t, b)
	close(release)
	joinAnswerThenCut(t, client, a, b, joined, "hello answer")
}
