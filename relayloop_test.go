package rtcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// loopSessions returns how many sessions dp's relay loop holds.
func loopSessions(dp *DiscoverPoint) int { return dp.loop.Len() }

// tcpSession dials name through dp with the tcp transport on both sides
// (a raw leg to a data link: two TCP connections at the DP) and checks
// that it echoes.
func loopTCPSession(t *testing.T, d *Dialer, dp, name string) net.Conn {
	t.Helper()
	d.Transport = TransportTCP
	c, err := d.DialContext(context.Background(), dp, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ping(t, c, "hello")
	return c
}

// wantCut checks that c's session was cut: its read fails with a reset,
// not a clean end.
func wantLoopCut(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	_, err := io.ReadAll(c)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: the client read %v, want a reset", what, err)
	}
}

// cutLog is a slog.Handler that reports each session whose relay the DP
// saw cut (joinEnded: after the relay, and so Loop.Join, returned).
type cutLog struct{ cut chan string }

func (h cutLog) Enabled(context.Context, slog.Level) bool { return true }
func (h cutLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h cutLog) WithGroup(string) slog.Handler            { return h }
func (h cutLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "rtcp: session cut" {
		select {
		case h.cut <- r.Message:
		default: // one is enough: the test waits for the first
		}
	}
	return nil
}

// TestRelayLoopDPClose: the sessions the DP's relay loop holds are cut
// by its Close, whose outside Close of their connections would reach
// nothing (the loop has their sockets), and the loop ends with it
// (goleak).
func TestRelayLoopDPClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the relay loop is Linux's")
	}
	dpv := &DiscoverPoint{Logger: testLogger()}
	dp := startDP(t, dpv)
	echo(t, listen(t, &ListenConfig{Transport: TransportTCP}, dp, "printer"))
	var cs []net.Conn
	for range 3 {
		cs = append(cs, loopTCPSession(t, new(Dialer), dp, "printer"))
	}
	if n := loopSessions(dpv); n != 3 {
		t.Fatalf("the relay loop holds %d sessions, want the 3 open", n)
	}
	dpv.Close()
	for i, c := range cs {
		wantLoopCut(t, c, "session "+string(rune('1'+i))+" after the DP's Close")
	}
}

// TestRelayLoopPolicyCut: a SetPolicy that no longer allows a client
// cuts its session in the relay loop, and leaves the others.
func TestRelayLoopPolicyCut(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the relay loop is Linux's")
	}
	printer := NameRule{Name: "printer", Owners: []string{"alice"}, Clients: []string{"bob", "mallory"}}
	// The relay of mallory's session returns after her client reads the
	// reset: the loop's count drops then (its log says when).
	cuts := cutLog{cut: make(chan string, 1)}
	dpv := &DiscoverPoint{Logger: slog.New(cuts), Policy: &Policy{Keys: testKeys(), Names: []NameRule{printer}}}
	dp := startDP(t, dpv)
	echo(t, listen(t, &ListenConfig{Credential: alice, Transport: TransportTCP}, dp, "printer"))
	keep := loopTCPSession(t, &Dialer{Credential: bob}, dp, "printer")
	lose := loopTCPSession(t, &Dialer{Credential: mallory}, dp, "printer")
	if n := loopSessions(dpv); n != 2 {
		t.Fatalf("the relay loop holds %d sessions, want the 2 open", n)
	}
	keys := testKeys()
	delete(keys, "mallory")
	printer.Clients = []string{"bob"}
	if err := dpv.SetPolicy(&Policy{Keys: keys, Names: []NameRule{printer}}); err != nil {
		t.Fatal(err)
	}
	wantLoopCut(t, lose, "mallory's session after her key was revoked")
	<-cuts.cut
	ping(t, keep, "after")
	if n := loopSessions(dpv); n != 1 {
		t.Errorf("the relay loop holds %d sessions, want bob's", n)
	}
}
