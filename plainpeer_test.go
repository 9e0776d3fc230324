package rtcp

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/memnet"
	"rtcp/protocol/plan5"
)

// Plan5's own code does no flow control: it writes each message as four
// writes ("3", "\n", the JSON, "\n"), Data of about 3000 bytes, as fast as
// TCP takes them. These tests put such a peer, written by hand, in front
// of a reader that is slower than it, through a DP, in a synctest bubble
// over in-memory connections (memnet): no session may be lost, every
// byte must arrive in order, and what rtcp holds in between must stay
// bounded, because a full session stops its connection being read.
//
// The peers send V=10000 and read with one buffered reader: they test
// flow control. legacy_test.go replays Plan5's own code, V=113 and its
// reader included.

// plainChunk is the Data a plain peer sends: what fits a 4096-byte line.
const plainChunk = 3000

// writePlain writes one message the way Plan5's code does: four writes.
func writePlain(w io.Writer, typ byte, body string) error {
	for _, s := range []string{string(typ), "\n", body, "\n"} {
		if _, err := io.WriteString(w, s); err != nil {
			return err
		}
	}
	return nil
}

// floodPlain writes total bytes of the pattern as Data of plainChunk bytes
// for each session x in turn, back to back and unpaced, counting what
// each message handed over.
func floodPlain(w io.Writer, p *flowtest.Pattern, total int64, xs []int64, wrote []atomic.Int64) error {
	var body []byte
	for off := int64(0); off < total; off += plainChunk {
		n := int(min(plainChunk, total-off))
		for i, x := range xs {
			body = fmt.Appendf(body[:0], `{"X":%d,"C":"`, x)
			body = base64.StdEncoding.AppendEncode(body, p.At(off, n))
			body = append(body, `"}`...)
			if err := writePlain(w, '3', string(body)); err != nil {
				return err
			}
			wrote[i].Add(int64(n))
		}
	}
	return nil
}

// TestPlainClientFastWriter: a plain Plan5 client (no Window in its
// Aloha) streams 50 MB (8 MB under -race) unpaced through the DP to an rtcp server that
// reads slowly and once stops for a minute. Nothing is cut, every byte
// arrives, and at most the DP's MaxBuffer and the server's window (and a
// few chunks) sit between the client and the server's reader.
func TestPlainClientFastWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 50 MB takes 0.7 s, but 16 s under the race detector (every
		// byte is base64 and JSON twice): there, 8 MB.
		total := int64(50 << 20)
		if raceEnabled {
			total = 8 << 20
		}
		// The DP holds at most MaxBuffer (256 KiB) for the client, the
		// server the credit it granted (256 KiB: a reader that never
		// catches up never grows its window), and a few chunks are in
		// flight.
		const heldBound = 2*256<<10 + 64<<10
		logs, logger := flowtest.NewLogs()
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{Logger: logger}
		stop := serveFault(t, dp, n)
		defer stop()
		lc := ListenConfig{Dial: n.TapDialer("server"), Logger: logger}
		l, err := lc.Listen(context.Background(), faultDP, "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				t.Errorf("Accept: %v", err)
			}
			accepted <- c
		}()

		c, err := n.DialContext(context.Background(), "tcp", faultDP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		writePlain(c, '0', `{"V":10000,"R":3,"N":"plain","HeartBeat":0}`)
		if typ, m := plainLine(t, br); typ != '0' || m["R"] != float64(4) {
			t.Fatalf("the DP answered the Aloha with %c %v", typ, m)
		}
		writePlain(c, '1', `{"N":"svc"}`)
		typ, m := plainLine(t, br)
		x, _ := m["X"].(float64)
		if typ != '2' || x < 0 {
			t.Fatalf("the DP answered Connect with %c %v, want an Ack", typ, m)
		}
		sc := <-accepted
		if sc == nil {
			return
		}
		defer sc.Close()
		go io.Copy(io.Discard, br) // nothing comes back but the end

		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 1)
		flooded := make(chan error, 1)
		go func() { flooded <- floodPlain(c, p, total, []int64{int64(x)}, wrote) }()

		base := flowtest.HeapInuse()
		var maxHeld, maxHeap int64
		stopped := false
		got, err := flowtest.SlowRead(sc, p, total, 64<<10, func(read int64) {
			h := wrote[0].Load() - read
			maxHeld = max(maxHeld, h)
			if h > heldBound {
				t.Fatalf("after %d bytes read, %d sit between the client and the stopped reader; want at most %d", read, h, heldBound)
			}
			if read%(8<<20) == 0 {
				g := flowtest.HeapInuse() - base
				maxHeap = max(maxHeap, g)
				if g > 8<<20 {
					t.Fatalf("after %d bytes read, the heap grew by %d; want at most 8 MiB", read, g)
				}
			}
			if !stopped && read >= total/4 {
				stopped = true
				time.Sleep(time.Minute) // six times the default StallTimeout
			}
		})
		if err != nil || got != total {
			t.Fatalf("the server read %d of %d bytes, then %v", got, total, err)
		}
		if err := <-flooded; err != nil {
			t.Fatalf("the client's writes failed: %v", err)
		}
		writePlain(c, '4', fmt.Sprintf(`{"X":%d,"R":""}`, int64(x)))
		if b, err := io.ReadAll(sc); len(b) != 0 || err != nil {
			t.Errorf("after the client's Close the server read %d more bytes, then %v; want io.EOF", len(b), err)
		}
		for _, r := range logs.AtLeast(slog.LevelWarn) {
			t.Errorf("logged %v; want no session cut", r)
		}
		t.Logf("%d MB from a plain client: at most %d bytes held, heap grew by at most %d", total>>20, maxHeld, maxHeap)
	})
}

// plainServer registers a plain Plan5 server, written by hand, as "plain"
// on the DP of n and opens k sessions to it, X=1 to k, each from an rtcp
// client. It returns the server's connection, the first Close the DP sends
// it (the DP answers each Data for a session after its Close with a Close
// too), and the clients' connections.
func plainServer(t *testing.T, n *memnet.Listener, k int) (srv net.Conn, closes <-chan *plan5.Close, clients []net.Conn) {
	t.Helper()
	srv, err := n.TapDialer("plain")(context.Background(), "tcp", faultDP)
	if err != nil {
		t.Fatal(err)
	}
	r := plan5.NewReader(srv, 0)
	writePlain(srv, '0', `{"V":10000,"R":2,"N":"plain","HeartBeat":0}`)
	if m, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	} else if a, ok := m.(*plan5.Aloha); !ok || a.R != plan5.RoleDP {
		t.Fatalf("the DP answered the Aloha with %+v", m)
	}
	d := &Dialer{Dial: n.TapDialer("client")}
	for i := range k {
		dialed := make(chan net.Conn, 1)
		go func() {
			c, err := d.DialContext(context.Background(), faultDP, "plain")
			if err != nil {
				t.Errorf("Dial: %v", err)
			}
			dialed <- c
		}()
		if m, err := r.ReadMessage(); err != nil {
			t.Fatal(err)
		} else if _, ok := m.(*plan5.Connect); !ok {
			t.Fatalf("the plain server got %#v, want a Connect", m)
		}
		writePlain(srv, '2', fmt.Sprintf(`{"X":%d,"R":""}`, i+1))
		c := <-dialed
		if c == nil {
			t.FailNow()
		}
		clients = append(clients, c)
	}
	ch := make(chan *plan5.Close, 1)
	go func() {
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			if cl, ok := m.(*plan5.Close); ok {
				select {
				case ch <- cl:
				default:
				}
			}
		}
	}()
	return srv, ch, clients
}

// TestPlainServerStall: a plain Plan5 server floods two sessions on its
// one link; one client stops reading. The DP stops reading the link, so
// the other client waits too, until the DP's StallTimeout passes: then the
// stalled session is cut (Close with Abort to the server, an error for the
// client, a log line that names the stall timeout) and the other carries
// on to its last byte.
func TestPlainServerStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = 5 * time.Second
		const total = 4 << 20
		logs, logger := flowtest.NewLogs()
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{Logger: logger, StallTimeout: stall}
		stop := serveFault(t, dp, n)
		defer stop()

		srv, closes, clients := plainServer(t, n, 2)
		defer srv.Close()
		for _, c := range clients {
			defer c.Close()
		}
		stalled, reader := clients[0], clients[1]

		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 2)
		flooded := make(chan error, 1)
		go func() { flooded <- floodPlain(srv, p, total, []int64{1, 2}, wrote) }()
		var read atomic.Int64
		type result struct {
			n   int64
			err error
		}
		got := make(chan result, 1)
		go func() {
			n, err := flowtest.ReadAll(reader, p, &read)
			got <- result{n, err}
		}()

		synctest.Wait()
		began, before := time.Now(), read.Load()
		time.Sleep(stall - time.Second)
		synctest.Wait()
		if r := read.Load(); r != before || r >= total {
			t.Errorf("the other client read %d bytes while the link was held (%d before); want none", r-before, before)
		}
		cl := <-closes
		if cl.X != 1 || !cl.Abort || !strings.Contains(cl.R, "stall timeout") {
			t.Errorf("the DP sent the plain server %+v; want Close X=1, Abort, with a reason that names the stall timeout", cl)
		}
		if waited := time.Since(began); waited != stall {
			t.Errorf("the stalled session was cut after %v, want StallTimeout %v", waited, stall)
		}
		if err := <-flooded; err != nil {
			t.Fatalf("the plain server's writes failed: %v", err)
		}
		writePlain(srv, '4', `{"X":2,"R":""}`)
		if r := <-got; r.n != total || r.err != nil {
			t.Fatalf("the other client read %d of %d bytes, then %v", r.n, int64(total), r.err)
		}
		// The stalled client comes back: what the DP held, then an
		// error, not io.EOF.
		if n, err := flowtest.ReadAll(stalled, p, nil); err == nil || errors.Is(err, io.EOF) || n > wrote[0].Load() {
			t.Errorf("the stalled client read %d bytes (of %d sent), then %v; want what was held, then an error", n, wrote[0].Load(), err)
		}
		cuts := logs.Find(slog.LevelWarn, "rtcp: session cut")
		if len(cuts) != 1 || cuts[0].Attrs["session"] != strconv.Itoa(1) || !strings.Contains(cuts[0].Attrs["reason"], "took nothing for "+stall.String()) {
			t.Errorf("the DP logged the cuts %v; want one of session 1 whose reason names the stall timeout %v", cuts, stall)
		}
	})
}

// TestStallCutReleasesTheClient: once the DP has cut a stalled session, it
// should not keep the session's client connection, its relay and the bytes
// it held for a client that never reads again.
func TestStallCutReleasesTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const stall = 5 * time.Second
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{StallTimeout: stall}
		stop := serveFault(t, dp, n)
		defer stop()
		srv, closes, clients := plainServer(t, n, 2)
		defer srv.Close()
		for _, c := range clients {
			defer c.Close()
		}
		go func() {
			io.Copy(io.Discard, clients[1])
			clients[1].Close()
		}()
		p := flowtest.NewPattern()
		wrote := make([]atomic.Int64, 2)
		go floodPlain(srv, p, 4<<20, []int64{1, 2}, wrote)
		if cl := <-closes; cl.X != 1 {
			t.Fatalf("the DP sent %+v, want the stalled session's Close", cl)
		}
		writePlain(srv, '4', `{"X":2,"R":""}`)
		time.Sleep(time.Hour)
		synctest.Wait()
		if st := dp.Stats(); st.Sessions != 0 {
			t.Errorf("an hour after the DP cut the stalled session and the other ended, it counts %d sessions open; want 0", st.Sessions)
		}
	})
}
