package yamuxlink

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

// peer speaks raw yamux frames to one of our sessions, to check exactly
// what goes on the wire.
type peer struct {
	t testing.TB
	c net.Conn
	r *yamux.Reader
}

func newPeer(t testing.TB, c net.Conn) *peer {
	return &peer{t: t, c: c, r: yamux.NewReader(c, 16<<20)}
}

func (p *peer) send(t yamux.Type, flags yamux.Flags, id, length uint32, data string) {
	p.t.Helper()
	b := yamux.Header{Type: t, Flags: flags, StreamID: id, Length: length}.Append(nil)
	if _, err := p.c.Write(append(b, data...)); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

func (p *peer) next() (yamux.Header, []byte, error) {
	p.c.SetReadDeadline(time.Now().Add(hangLimit))
	return p.r.ReadFrame()
}

// expect reads the next frame and checks it is want.
func (p *peer) expect(want yamux.Header, data string) {
	p.t.Helper()
	h, got, err := p.next()
	if err != nil {
		p.t.Fatalf("peer waiting for %v: %v", want, err)
	}
	if h != want || string(got) != data {
		p.t.Fatalf("peer read %v %q, want %v %q", h, got, want, data)
	}
}

// expectOpen reads a SYN or ACK (flags) for stream id with the grant above
// 256 KiB: on the frame itself, or in a WindowUpdate right after it when
// the session wrote the two in different batches.
func (p *peer) expectOpen(flags yamux.Flags, id uint32) {
	p.t.Helper()
	h, _, err := p.next()
	if err != nil {
		p.t.Fatalf("peer waiting for %v of stream %d: %v", flags, id, err)
	}
	if h == hdr(yamux.TypeWindowUpdate, flags, id, grant) {
		return
	}
	if h != hdr(yamux.TypeWindowUpdate, flags, id, 0) {
		p.t.Fatalf("peer read %v, want a WindowUpdate %v for stream %d", h, flags, id)
	}
	p.expect(hdr(yamux.TypeWindowUpdate, 0, id, grant), "")
}

func hdr(t yamux.Type, flags yamux.Flags, id, length uint32) yamux.Header {
	return yamux.Header{Type: t, Flags: flags, StreamID: id, Length: length}
}

const grant = DefaultWindow - yamux.InitialWindow // what a SYN or ACK of ours grants

// rawLink is one of our sessions (the yamux server unless client) facing
// a raw peer.
func rawLink(t *testing.T, client bool, adjust func(*mux.Config)) (*mux.Session, *peer) {
	a, b := tcpPair(t)
	s := ours(a, client, nil, adjust)
	t.Cleanup(func() {
		b.Close()
		s.Close()
	})
	return s, newPeer(t, b)
}

// TestWireOpenAccept checks the frames of opens both ways: a SYN or ACK
// carries the grant above 256 KiB, and the client's IDs are odd, the
// server's even.
func TestWireOpenAccept(t *testing.T) {
	for _, client := range []bool{true, false} {
		name := map[bool]string{true: "client", false: "server"}[client]
		t.Run(name, func(t *testing.T) {
			s, p := rawLink(t, client, nil)
			first := uint32(2)
			if client {
				first = 1
			}
			for i := range uint32(2) {
				st, err := s.Open(context.Background(), "", "")
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(first + 2*i); st.ID() != want {
					t.Errorf("opened stream %d, want %d", st.ID(), want)
				}
				p.expectOpen(yamux.FlagSYN, first+2*i)
			}
			// The peer opens with data on its SYN, as the spec allows.
			theirs := 103 - first // the peer's parity
			p.send(yamux.TypeData, yamux.FlagSYN, theirs, 5, "hello")
			st, err := s.Accept()
			if err != nil {
				t.Fatal(err)
			}
			p.expectOpen(yamux.FlagACK, theirs)
			buf := make([]byte, 5)
			if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "hello" || st.ID() != int64(theirs) {
				t.Fatalf("accepted stream %d read %q, %v", st.ID(), buf, err)
			}
			st.Write([]byte("hi"))
			p.expect(hdr(yamux.TypeData, 0, theirs, 2), "hi")
		})
	}
}

// TestWireStreamEnds checks how streams end on the wire, both ways.
func TestWireStreamEnds(t *testing.T) {
	s, p := rawLink(t, false, nil)
	accept := func(t *testing.T, id uint32) *mux.Stream {
		t.Helper()
		p.send(yamux.TypeWindowUpdate, yamux.FlagSYN, id, 0, "")
		st, err := s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		p.expectOpen(yamux.FlagACK, id)
		return st
	}
	ping := func(t *testing.T, n uint32) {
		t.Helper()
		p.send(yamux.TypePing, yamux.FlagSYN, 0, n, "")
		p.expect(hdr(yamux.TypePing, yamux.FlagACK, 0, n), "")
	}

	t.Run("CloseWrite then Close sends one FIN", func(t *testing.T) {
		p.t = t
		st := accept(t, 1)
		st.CloseWrite()
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagFIN, 1, 0), "")
		st.Close()
		// A second FIN would come before the pong: hashicorp/yamux ends
		// the whole session on one.
		ping(t, 1)
		// Data that still comes is answered with an RST.
		p.send(yamux.TypeData, 0, 1, 4, "late")
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 1, 0), "")
	})
	t.Run("data with FIN", func(t *testing.T) {
		p.t = t
		st := accept(t, 3)
		p.send(yamux.TypeData, yamux.FlagFIN, 3, 3, "end")
		got, err := io.ReadAll(st)
		if err != nil || string(got) != "end" {
			t.Fatalf("read %q, %v; want \"end\" then io.EOF", got, err)
		}
		st.Write([]byte("back"))
		p.expect(hdr(yamux.TypeData, 0, 3, 4), "back")
		st.Close()
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagFIN, 3, 0), "")
		ping(t, 3)
	})
	t.Run("Close then peer FIN", func(t *testing.T) {
		p.t = t
		st := accept(t, 5)
		st.Close()
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagFIN, 5, 0), "")
		p.send(yamux.TypeWindowUpdate, yamux.FlagFIN, 5, 0, "")
		ping(t, 5)
		if n := s.NumStreams(); n != 0 {
			t.Errorf("%d streams left", n)
		}
	})
	t.Run("Abort sends RST", func(t *testing.T) {
		p.t = t
		st := accept(t, 7)
		st.Abort(errors.New("cut"))
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 7, 0), "")
	})
	t.Run("peer RST", func(t *testing.T) {
		p.t = t
		st := accept(t, 9)
		p.send(yamux.TypeWindowUpdate, yamux.FlagRST, 9, 0, "")
		_, err := st.Read(make([]byte, 1))
		if err == nil || !strings.Contains(err.Error(), ResetReason) {
			t.Fatalf("Read after RST: %v, want %q", err, ResetReason)
		}
	})
	t.Run("data for no stream", func(t *testing.T) {
		p.t = t
		p.send(yamux.TypeData, 0, 11, 1, "x")
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 11, 0), "")
	})
	t.Run("more than the window", func(t *testing.T) {
		p.t = t
		st := accept(t, 13)
		p.send(yamux.TypeData, 0, 13, DefaultWindow, strings.Repeat("x", DefaultWindow))
		p.send(yamux.TypeData, 0, 13, 1, "y")
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 13, 0), "")
		if _, err := io.ReadAll(st); err == nil {
			t.Error("the stream read to its end after the peer overran its window")
		}
	})
	t.Run("refused open", func(t *testing.T) {
		p.t = t
		s.RefuseOpens("rtcp: not now")
		p.send(yamux.TypeWindowUpdate, yamux.FlagSYN, 15, 0, "")
		p.expect(hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 15, 0), "")
	})
}

// TestWirePing checks both halves of keepalive: the peer's ping is
// answered with its opaque value, and the session's heartbeat is a ping.
func TestWirePing(t *testing.T) {
	s, p := rawLink(t, true, nil)
	p.send(yamux.TypePing, yamux.FlagSYN, 0, 0xdeadbeef, "")
	p.expect(hdr(yamux.TypePing, yamux.FlagACK, 0, 0xdeadbeef), "")
	s.SetKeepAlive(time.Millisecond)
	for i := range uint32(3) {
		p.expect(hdr(yamux.TypePing, yamux.FlagSYN, 0, i+1), "")
		p.send(yamux.TypePing, yamux.FlagACK, 0, i+1, "")
	}
	s.SetKeepAlive(0)
}

// TestWireSessionEnd checks GoAway both ways, and that bytes that are not
// yamux end the session with a GoAway saying protocol error.
func TestWireSessionEnd(t *testing.T) {
	for _, c := range []struct {
		name string
		send string // what the peer sends
		want uint32 // the GoAway code our session sends, or none
		err  string // words of the session's Err
	}{
		{"go away normal", string(hdr(yamux.TypeGoAway, 0, 0, 0).Append(nil)), none, "go away, code 0: normal"},
		{"go away protocol error", string(hdr(yamux.TypeGoAway, 0, 0, 1).Append(nil)), none, "go away, code 1: protocol error"},
		{"go away code 9", string(hdr(yamux.TypeGoAway, 0, 0, 9).Append(nil)), none, "code 9: unknown code 9"},
		{"version 1", "\x01" + strings.Repeat("\x00", 11), yamux.GoAwayProtocolError, "version 1"},
		{"type 4", "\x00\x04" + strings.Repeat("\x00", 10), yamux.GoAwayProtocolError, "type 4"},
		{"data for stream 0", string(hdr(yamux.TypeData, 0, 0, 1).Append(nil)) + "x", yamux.GoAwayProtocolError, "stream 0"},
		{"window update for stream 0", string(hdr(yamux.TypeWindowUpdate, 0, 0, 1).Append(nil)), yamux.GoAwayProtocolError, "stream 0"},
		{"data over the cap", string(hdr(yamux.TypeData, 0, 1, DefaultWindow+1).Append(nil)), yamux.GoAwayProtocolError, "over the cap of 4194304"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, p := rawLink(t, true, nil)
			if _, err := p.c.Write([]byte(c.send)); err != nil {
				t.Fatal(err)
			}
			var got []yamux.Header
			for {
				h, _, err := p.next()
				if err != nil {
					break
				}
				got = append(got, h)
			}
			<-s.Done()
			if c.want == none && len(got) != 0 || c.want != none && (len(got) != 1 || got[0] != hdr(yamux.TypeGoAway, 0, 0, c.want)) {
				t.Errorf("the session sent %v", got)
			}
			if err := s.Err(); err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("session ended with %v, want it to say %q", err, c.err)
			}
		})
	}
	t.Run("Abort", func(t *testing.T) {
		s, p := rawLink(t, false, nil)
		go s.Abort(errors.New("rtcp: shutting down"))
		p.expect(hdr(yamux.TypeGoAway, 0, 0, yamux.GoAwayInternalError), "")
	})
}

const none = ^uint32(0)

// TestWriteFrameCoalesces checks the write side alone: a grant joins the
// SYN or ACK written just before it, and nothing else.
func TestWriteFrameCoalesces(t *testing.T) {
	var out bytes.Buffer
	fr := NewFramer(strings.NewReader(""), &out, 0, false)
	for _, f := range []mux.Frame{
		{Kind: mux.KindOpen, ID: 1},
		{Kind: mux.KindData, ID: 1, Credit: 100},
		{Kind: mux.KindData, ID: 1, Credit: 5}, // not joined: the SYN has its grant
		{Kind: mux.KindAck, ID: 2},
		{Kind: mux.KindData, ID: 3, Credit: 7}, // another stream
		{Kind: mux.KindAck, ID: -1},            // nothing
		{Kind: mux.KindData, ID: 2, Data: []byte("ab"), Credit: 9},
		{Kind: mux.KindClose, ID: 1},
		{Kind: mux.KindClose, ID: -1},
		{Kind: mux.KindClose, ID: -1, Abort: true, Reason: "rtcp: protocol error on the link: x"},
		{Kind: mux.KindKeepAlive},
		{Kind: mux.KindKeepAlive, Pong: true, ID: 77},
	} {
		if err := fr.WriteFrame(&f); err != nil {
			t.Fatal(err)
		}
	}
	if out.Len() != 0 {
		t.Fatal("WriteFrame wrote small frames before Flush")
	}
	fr.Flush()
	var want []byte
	for _, h := range []yamux.Header{
		hdr(yamux.TypeWindowUpdate, yamux.FlagSYN, 1, 100),
		hdr(yamux.TypeWindowUpdate, 0, 1, 5),
		hdr(yamux.TypeWindowUpdate, yamux.FlagACK, 2, 0),
		hdr(yamux.TypeWindowUpdate, 0, 3, 7),
		hdr(yamux.TypeData, 0, 2, 2),
	} {
		want = h.Append(want)
	}
	want = append(want, "ab"...)
	for _, h := range []yamux.Header{
		hdr(yamux.TypeWindowUpdate, 0, 2, 9),
		hdr(yamux.TypeWindowUpdate, yamux.FlagFIN, 1, 0),
		hdr(yamux.TypeGoAway, 0, 0, 0),
		hdr(yamux.TypeGoAway, 0, 0, 1),
		hdr(yamux.TypePing, yamux.FlagSYN, 0, 1),
		hdr(yamux.TypePing, yamux.FlagACK, 0, 77),
	} {
		want = h.Append(want)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("wrote % x\nwant  % x", out.Bytes(), want)
	}
	for _, f := range []mux.Frame{
		{Kind: mux.KindData, ID: 0, Data: []byte("x")},
		{Kind: mux.KindOpen, ID: 1 << 32},
		{Kind: mux.KindData, ID: 1, Credit: -1},
		{Kind: 99, ID: 1},
	} {
		if err := fr.WriteFrame(&f); err == nil {
			t.Errorf("WriteFrame(%+v) succeeded", f)
		}
	}
}

// TestReadFrameSplits checks that one yamux frame that says several things
// comes out as several mux frames, in order.
func TestReadFrameSplits(t *testing.T) {
	var in []byte
	in = hdr(yamux.TypeData, yamux.FlagSYN|yamux.FlagFIN, 2, 3).Append(in)
	in = append(in, "abc"...)
	in = hdr(yamux.TypeWindowUpdate, yamux.FlagACK|yamux.FlagRST, 4, 10).Append(in)
	in = hdr(yamux.TypeData, 0, 6, 0).Append(in) // says nothing: skipped
	in = hdr(yamux.TypePing, yamux.FlagACK, 0, 3).Append(in)
	fr := NewFramer(bytes.NewReader(in), io.Discard, 0, false)
	want := []mux.Frame{
		{Kind: mux.KindOpen, ID: 2},
		{Kind: mux.KindData, ID: 2, Data: []byte("abc")},
		{Kind: mux.KindCloseWrite, ID: 2},
		{Kind: mux.KindAck, ID: 4},
		{Kind: mux.KindData, ID: 4, Credit: 10},
		{Kind: mux.KindClose, ID: 4, Abort: true, Reason: ResetReason},
		{Kind: mux.KindKeepAlive},
	}
	for i, w := range want {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Kind != w.Kind || f.ID != w.ID || string(f.Data) != string(w.Data) || f.Credit != w.Credit ||
			f.Abort != w.Abort || f.Reason != w.Reason || f.Ping != w.Ping {
			t.Errorf("frame %d = %+v, want %+v", i, *f, w)
		}
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}
