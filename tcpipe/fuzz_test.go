package tcpipe

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"rtcp/internal/mux"
	wire "rtcp/protocol/tcpipe"
)

// FuzzFramer feeds any bytes to a partner link's framer, answering some of
// the connections it opens, and checks that what reaches the session
// layer is well formed and what goes back on the wire decodes.
func FuzzFramer(f *testing.F) {
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	f.Add(cat(wireFrame(1, 0, 40000, nil), wireFrame(0, 0, 40000, []byte("hello")), wireFrame(2, 0, 40000, nil)))
	f.Add(cat(wireFrame(1, 0, 23, nil), wireFrame(1, 0, 23, nil), wireFrame(0, 1, 23, []byte("x")), wireFrame(2, 1, 7, nil)))
	f.Add(cat(wireFrame(0, 0, 1, nil), wireFrame(3, 0, 1, nil)))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(cat(wireFrame(1, 0, 65535, nil), wireFrame(0, 0, 65535, bytes.Repeat([]byte{1}, 1024))))
	f.Add(cat(wireFrame(0, 1, 23, []byte("x")), wireFrame(0, 1, 23, []byte("y")), wireFrame(2, 1, 23, nil), wireFrame(0, 1, 23, []byte("z"))))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		fr := newFramer(bytes.NewReader(in), &out)
		// Connections this instance accepted on two ports: the framer tells
		// of the partner's first Data for each, once, and of Disconnects.
		spoke := make(map[uint16]int)
		fr.heard = func(port uint16, end bool) {
			if !end {
				spoke[port]++
				if port != 23 && port != 40000 || spoke[port] > 1 {
					t.Fatalf("told of the first Data for port %d %d times; it accepted ports 23 and 40000, once", port, spoke[port])
				}
			}
		}
		for _, p := range []int64{23, 40000} {
			fr.WriteFrame(&mux.Frame{Kind: mux.KindOpen, ID: p, Addr: strconv.Itoa(int(p))})
		}
		fr.Flush()
		out.Reset()
		for i := 0; ; i++ {
			g, err := fr.ReadFrame()
			if err != nil {
				break
			}
			if g.ID < 0 || g.ID >= 2*peerBase {
				t.Fatalf("frame for stream %d", g.ID)
			}
			switch g.Kind {
			case mux.KindOpen:
				if g.ID < peerBase || g.Addr != strconv.Itoa(int(g.ID-peerBase)) {
					t.Fatalf("open of stream %d for port %q", g.ID, g.Addr)
				}
				fr.WriteFrame(&mux.Frame{Kind: mux.KindData, ID: g.ID, Data: bytes.Repeat([]byte{'y'}, i%2000)})
				if i%3 == 0 {
					fr.WriteFrame(&mux.Frame{Kind: mux.KindClose, ID: g.ID})
				}
			case mux.KindData:
				if len(g.Data) == 0 || len(g.Data) > wire.MaxData {
					t.Fatalf("data of %d bytes reached the session", len(g.Data))
				}
			case mux.KindClose:
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
			if w.Kind == wire.Connect {
				t.Fatalf("the framer wrote %v for a connection it did not accept", w)
			}
		}
	})
}
