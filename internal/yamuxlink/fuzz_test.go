package yamuxlink

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

// FuzzFramer feeds any bytes to the yamux Framer, answering what it reads
// the way a session would, and checks that what reaches the session layer
// is well formed, that only *mux.ProtocolError or the input's end stops
// it, and that what it writes back decodes.
func FuzzFramer(f *testing.F) {
	hdr := func(t yamux.Type, fl yamux.Flags, id, n uint32, data string) []byte {
		return append(yamux.Header{Type: t, Flags: fl, StreamID: id, Length: n}.Append(nil), data...)
	}
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	f.Add(cat(
		hdr(yamux.TypeWindowUpdate, yamux.FlagSYN, 1, 0, ""),
		hdr(yamux.TypeData, 0, 1, 5, "hello"),
		hdr(yamux.TypeWindowUpdate, 0, 1, 4<<20, ""),
		hdr(yamux.TypeWindowUpdate, yamux.FlagFIN, 1, 0, ""),
	))
	f.Add(cat(
		hdr(yamux.TypeData, yamux.FlagSYN, 3, 2, "hi"),
		hdr(yamux.TypeWindowUpdate, yamux.FlagRST, 3, 0, ""),
		hdr(yamux.TypePing, yamux.FlagSYN, 0, 7, ""),
		hdr(yamux.TypePing, yamux.FlagACK, 0, 7, ""),
		hdr(yamux.TypeGoAway, 0, 0, 1, ""),
	))
	f.Add(cat(
		hdr(yamux.TypeWindowUpdate, yamux.FlagACK, 2, 0, ""),
		hdr(yamux.TypeData, yamux.FlagFIN, 2, 3, "end"),
	))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		fr := NewFramer(bytes.NewReader(in), &out, 1<<10, false)
		for i := 0; i < 10000; i++ {
			g, err := fr.ReadFrame()
			if err != nil {
				var pe *mux.ProtocolError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &pe) {
					t.Fatalf("ReadFrame failed with %T %v, want a *mux.ProtocolError or the end", err, err)
				}
				break
			}
			switch g.Kind {
			case mux.KindOpen, mux.KindAck, mux.KindCloseWrite:
				if g.ID <= 0 {
					t.Fatalf("%v for stream %d", g.Kind, g.ID)
				}
				if g.Kind == mux.KindOpen {
					fr.WriteFrame(&mux.Frame{Kind: mux.KindAck, ID: g.ID})
					fr.WriteFrame(&mux.Frame{Kind: mux.KindData, ID: g.ID, Data: bytes.Repeat([]byte{'y'}, i%3000), Credit: i})
				}
			case mux.KindData:
				if g.ID <= 0 || len(g.Data) > 1<<10 || g.Credit < 0 || (len(g.Data) == 0 && g.Credit == 0) {
					t.Fatalf("data frame %+v", g)
				}
			case mux.KindClose:
				if g.ID < 0 {
					if g.Reason == "" {
						t.Fatalf("the session's end without a reason")
					}
					continue
				}
				fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: g.ID, Abort: i%2 == 0})
			case mux.KindKeepAlive:
				if g.Ping {
					fr.WriteFrame(&mux.Frame{Kind: mux.KindKeepAlive, ID: g.ID, Pong: true})
				}
			default:
				t.Fatalf("frame of kind %v", g.Kind)
			}
		}
		fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: -1, Reason: "done"})
		if err := fr.Flush(); err != nil {
			t.Fatal(err)
		}
		r := yamux.NewReader(&out, 1<<20)
		for {
			_, _, err := r.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the Framer wrote a bad frame: %v", err)
			}
		}
	})
}

// TestWindowUpdatePast2GiB: a yamux window update may grant up to 4 GiB;
// on 32-bit systems (linux/386, arm), where an int holds less, it reaches
// the session as the most credit an int holds, not as a negative grant
// that cut the link with a protocol error.
func TestWindowUpdatePast2GiB(t *testing.T) {
	in := append(yamux.Header{Type: yamux.TypeWindowUpdate, Flags: yamux.FlagSYN, StreamID: 1}.Append(nil),
		yamux.Header{Type: yamux.TypeWindowUpdate, StreamID: 1, Length: 3 << 30}.Append(nil)...)
	fr := NewFramer(bytes.NewReader(in), io.Discard, 1<<10, false)
	for {
		g, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame: %v, before the grant", err)
		}
		if g.Kind == mux.KindData {
			if g.Credit <= 0 || uint64(g.Credit) > 3<<30 {
				t.Fatalf("a grant of 3 GiB read as %d", g.Credit)
			}
			return
		}
	}
}
