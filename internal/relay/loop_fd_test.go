//go:build linux

package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"rtcp/internal/flowtest"
)

// openFDs returns how many sockets, epoll sets and eventfds the process
// has open: not the pipes, which the splices of a burst keep in a pool
// until a GC frees them.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && !strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// TestLoopLeavesNoDescriptor: every way a session leaves a Loop - a
// clean end, a cut by its ctx in the loop, a ctx cut racing the Join's
// hand-over, a cut after a burst took it out of the loop, and the
// Loop's Close of those in it and of those that left it - closes the
// loop's duplicates of its sockets, once: with every Join returned and
// every test connection closed, the process holds as many descriptors
// as before the Loop.
func TestLoopLeavesNoDescriptor(t *testing.T) {
	before := openFDs(t)
	l, err := NewLoop()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []*net.TCPConn
		wg    sync.WaitGroup
	)
	pair := func() (client, a, b, server *net.TCPConn) {
		client, a = flowtest.TCPPair(t)
		b, server = flowtest.TCPPair(t)
		for _, c := range []*net.TCPConn{client, server} {
			c.SetDeadline(time.Now().Add(time.Minute))
		}
		mu.Lock()
		conns = append(conns, client, a, b, server)
		mu.Unlock()
		return
	}
	join := func(ctx context.Context, a, b net.Conn) <-chan error {
		done := make(chan error, 1)
		wg.Go(func() {
			_, err := l.JoinContext(ctx, a, b, nil)
			done <- err
		})
		return done
	}
	var writers sync.WaitGroup
	burst := func(client, server *net.TCPConn) {
		writers.Go(func() { client.Write(make([]byte, 1<<20)) }) // ends when the session does
		if _, err := io.ReadFull(server, make([]byte, 256<<10)); err != nil {
			t.Error(err)
		}
	}
	why := errors.New("cut")
	var closeCut []<-chan error
	for i := range 9 {
		// A clean end.
		client, a, b, server := pair()
		done := join(context.Background(), a, b)
		exchange(t, client, server, "request")
		client.CloseWrite()
		server.CloseWrite()
		io.Copy(io.Discard, client)
		io.Copy(io.Discard, server)
		if err := <-done; err != nil {
			t.Errorf("clean end: Join = %v", err)
		}
		// Cut by its ctx in the loop.
		ctx, cancel := context.WithCancelCause(context.Background())
		client, a, b, server = pair()
		done = join(ctx, a, b)
		exchange(t, client, server, "request")
		cancel(why)
		if err := <-done; !errors.Is(err, why) {
			t.Errorf("cut in the loop: Join = %v", err)
		}
		// A cut that races the hand-over, or comes before it.
		ctx, cancel = context.WithCancelCause(context.Background())
		_, a, b, _ = pair()
		switch i % 3 {
		case 0:
			cancel(why)
			done = join(ctx, a, b)
		case 1:
			done = join(ctx, a, b)
			cancel(why)
		default:
			done = join(ctx, a, b)
			go cancel(why)
		}
		if err := <-done; !errors.Is(err, why) {
			t.Errorf("cut as it came: Join = %v", err)
		}
		// Cut after a burst.
		ctx, cancel = context.WithCancelCause(context.Background())
		client, a, b, server = pair()
		done = join(ctx, a, b)
		burst(client, server)
		cancel(why)
		if err := <-done; !errors.Is(err, why) {
			t.Errorf("cut after a burst: Join = %v", err)
		}
		// Left to the Loop's Close: in the loop, and after a burst.
		client, a, b, server = pair()
		closeCut = append(closeCut, join(context.Background(), a, b))
		exchange(t, client, server, "request")
		client, a, b, server = pair()
		closeCut = append(closeCut, join(context.Background(), a, b))
		burst(client, server)
	}
	l.Close()
	for _, done := range closeCut {
		if err := <-done; !errors.Is(err, ErrLoopClosed) {
			t.Errorf("cut by Close: Join = %v", err)
		}
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	writers.Wait() // a Write in progress holds its descriptor until it returns
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after every session ended, %d before the Loop", after, before)
	}
}
