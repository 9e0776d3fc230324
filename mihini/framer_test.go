package mihini

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/mux"
	wire "rtcp/protocol/mihini"
)

func testFramer(device bool, in []byte, out io.Writer) *framer {
	return newFramer(device, wire.NewReader(bytes.NewReader(in)), out, time.Second, wire.MaxPayload, discard)
}

// TestNextID checks the server's client ids: 1..255, then 0, wrapping,
// never an id that is open or whose CLOSE is unanswered (until the grace
// period frees it).
func TestNextID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := testFramer(false, nil, io.Discard)
		open := map[int64]bool{}
		inUse := func(id int64) bool { return open[id] }
		next := func() int64 {
			t.Helper()
			id, err := fr.nextID("", "", inUse)
			if err != nil {
				t.Fatal(err)
			}
			open[id] = true
			fr.WriteFrame(&mux.Frame{Kind: mux.KindOpen, ID: id, Addr: "127.0.0.1:1"})
			return id
		}
		for want := int64(1); want <= 255; want++ {
			if id := next(); id != want {
				t.Fatalf("id %d, want %d", id, want)
			}
		}
		if id := next(); id != 0 {
			t.Fatalf("after 255: id %d, want 0", id)
		}
		if _, err := fr.nextID("", "", inUse); err == nil {
			t.Fatal("a 257th client got an id while 256 are open")
		}
		// 7 ends at the session layer and its CLOSE goes out: it is not
		// free until the device answers or the grace period passes.
		delete(open, 7)
		fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: 7})
		if id, err := fr.nextID("", "", inUse); err == nil {
			t.Fatalf("got id %d while the only free id waits for its CLOSE answer", id)
		}
		time.Sleep(time.Second)
		if id := next(); id != 7 {
			t.Fatalf("after the grace period: id %d, want 7", id)
		}
		// 9 ends and the device answers: free at once. The search goes on
		// after the last id given, 7.
		delete(open, 9)
		delete(open, 200)
		fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: 9})
		fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: 200})
		fr.close(9)
		fr.close(200)
		if id := next(); id != 9 {
			t.Fatalf("id %d, want 9", id)
		}
		if id := next(); id != 200 {
			t.Fatalf("id %d, want 200", id)
		}
	})
}

// FuzzFramer feeds any bytes to both ends' framers, closing some of the
// sessions they open on the way, and checks that what reaches the session
// layer is well formed and what goes back on the wire decodes.
func FuzzFramer(f *testing.F) {
	f.Add(true, []byte(string(unhex("00 05 03 01"))+"hello"+string(connectFrame(1, "127.0.0.1", 47002))+string(unhex("00 00 02 01 00 01 03 01 78"))))
	f.Add(false, []byte(string(unhex("00 02 03 01 68 69 00 00 02 01 00 00 04 00 00 00 02 09"))))
	f.Add(true, append(frame(wire.Data, 4, bytes.Repeat([]byte{'z'}, 300)), connectFrame(4, "::1", 22)...))
	f.Add(true, unhex("00 03 01 05 00 05 61 00 00 04 00"))
	f.Add(false, connectFrame(3, "h", 1))
	f.Fuzz(func(t *testing.T, device bool, in []byte) {
		var out bytes.Buffer
		fr := newFramer(device, wire.NewReader(bytes.NewReader(in)), &out, time.Second, 256, discard)
		for i := 0; ; i++ {
			g, err := fr.ReadFrame()
			if err != nil {
				break
			}
			if g.ID < 0 || g.ID > 255 {
				t.Fatalf("frame for id %d", g.ID)
			}
			switch g.Kind {
			case mux.KindOpen:
				if !device {
					t.Fatal("the server side opened a session from the wire")
				}
				if g.Addr != "" {
					host, port, err := net.SplitHostPort(g.Addr)
					if err != nil || host == "" {
						t.Fatalf("open with address %q: %v", g.Addr, err)
					}
					if _, err := strconv.ParseUint(port, 10, 16); err != nil {
						t.Fatalf("open with address %q: %v", g.Addr, err)
					}
				}
				if i%2 == 0 {
					fr.WriteFrame(&mux.Frame{Kind: mux.KindData, ID: g.ID, Data: []byte("x")})
					fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: g.ID})
				}
			case mux.KindData:
				if len(g.Data) == 0 {
					t.Fatal("empty data reached the session")
				}
			case mux.KindClose:
				fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: g.ID}) // the session's answer
			default:
				t.Fatalf("frame of kind %v", g.Kind)
			}
		}
		fr.Flush()
		r := wire.NewReader(&out)
		for {
			w, err := r.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the framer wrote a bad frame: %v", err)
			}
			if w.Command != wire.Data && w.Command != wire.Close {
				t.Fatalf("the framer wrote %v", w)
			}
		}
	})
}
