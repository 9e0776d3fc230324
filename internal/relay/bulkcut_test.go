package relay

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/tcpreset"
)

// TestJoinTCPBurstCut cuts a relay between two TCP connections in the
// middle of a burst (spliced, on Linux), at the source (a reset from the
// client) and at the destination (a reset from the server): the side
// still there reads an error, not a clean end, and Join returns a cut.
// A relay after it then carries a burst unchanged: no pipe went back to
// the pool with the cut burst's bytes still in it.
func TestJoinTCPBurstCut(t *testing.T) {
	for _, at := range []string{"source", "destination"} {
		t.Run(at, func(t *testing.T) {
			type joinResult struct {
				Stats
				err error
			}
			joined := make(chan joinResult, 1)
			client, server, sent := midBurst(t, func(a, b *net.TCPConn) {
				st, err := Join(a, b, nil)
				joined <- joinResult{st, err}
			})
			if at == "source" {
				client.SetLinger(0)
				client.Close()
				<-sent
				if _, err := io.Copy(io.Discard, server); err == nil {
					t.Errorf("the server read a clean end of a burst whose client reset")
				}
			} else {
				server.SetLinger(0)
				server.Close()
				// The reset's error goes to whichever call takes it
				// first, the blocked write or this read: after it the
				// other sees a bare end. The socket's state tells.
				_, rerr := io.Copy(io.Discard, client)
				werr := <-sent
				if werr == nil {
					t.Errorf("the client's 64 MiB write succeeded although the server reset")
				}
				if rerr == nil && runtime.GOOS == "linux" && !tcpreset.WasReset(client) {
					t.Errorf("the client read a clean end after the server reset, and no reset (write: %v)", werr)
				}
			}
			st := <-joined
			if !Cut(st.err) {
				t.Errorf("Join = %v, want a cut", st.err)
			}
			// Either direction may take the reset first: a's copy in
			// writing b, or b's in reading it. Both name b.
			if want, got := map[string]string{"source": "a", "destination": "b"}[at], failedSide(st.Stats); got != want {
				t.Errorf("Join blamed %s (FailedAtoB %v, FailedWrite %v); want %s, whose peer reset", got, st.FailedAtoB, st.FailedWrite, want)
			}
			burstThrough(t)
		})
	}
}

// midBurst starts relay from a to b, on its own goroutine, between a
// client connected to a and a server connected to b (TCP pairs), and
// returns once the server has read 2 MiB of the client's 64 MiB burst:
// well into it, past the small buffer, spliced on Linux. sent gets the
// client's write's error.
func midBurst(t *testing.T, relay func(a, b *net.TCPConn)) (client, server *net.TCPConn, sent <-chan error) {
	t.Helper()
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))
	go relay(a, b)
	wrote := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 64<<20))
		wrote <- err
	}()
	if _, err := io.ReadFull(server, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	return client, server, wrote
}

// failedSide names the side of Join(a, b) whose connection failed, as st
// tells it: the source of the failed copy, or its destination if the
// failure was writing it.
func failedSide(st Stats) string {
	if st.FailedAtoB == st.FailedWrite {
		return "b"
	}
	return "a"
}

// TestCopyTCPCutMidBurst cuts one direction of a relay between two TCP
// connections in the middle of a burst (spliced, on Linux): copyTCP
// reports a reset of its destination as a failed write, and one of its
// source as not.
func TestCopyTCPCutMidBurst(t *testing.T) {
	for _, at := range []string{"source", "destination"} {
		t.Run(at, func(t *testing.T) {
			type result struct {
				err   error
				wfail bool
			}
			copied := make(chan result, 1)
			client, server, sent := midBurst(t, func(a, b *net.TCPConn) {
				_, err, wfail := copyTCP(b, a, new(atomic.Bool), func(int64) {})
				a.Close() // ends the client's write, if it is still there
				b.Close()
				copied <- result{err, wfail}
			})
			reset := map[string]*net.TCPConn{"source": client, "destination": server}[at]
			reset.SetLinger(0)
			reset.Close()
			drained := make(chan struct{})
			go func() {
				io.Copy(io.Discard, server) // a copy still writing sees its source's reset
				close(drained)
			}()
			r := <-copied
			<-sent
			<-drained
			if r.err == nil || r.wfail != (at == "destination") {
				t.Errorf("copyTCP = %v, wfail %v; want an error, wfail %v", r.err, r.wfail, at == "destination")
			}
		})
	}
}

// burstThrough relays a burst between two new TCP connections and
// checks that it arrives unchanged.
func burstThrough(t *testing.T) {
	t.Helper()
	client, a := flowtest.TCPPair(t)
	b, server := flowtest.TCPPair(t)
	client.SetDeadline(time.Now().Add(time.Minute))
	server.SetDeadline(time.Now().Add(time.Minute))
	joined := make(chan error, 1)
	go func() {
		_, err := Join(a, b, nil)
		joined <- err
	}()
	burst := randomBytes(5, 8<<20+777)
	sent := make(chan error, 1)
	go func() {
		_, err := client.Write(burst)
		if err == nil {
			err = client.CloseWrite()
		}
		sent <- err
	}()
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	server.Close()
	if err := <-joined; err != nil {
		t.Errorf("Join = %v", err)
	}
	if !bytes.Equal(got, burst) {
		t.Errorf("%d bytes arrived, want the %d sent, unchanged", len(got), len(burst))
	}
}
