package yamuxlink

import (
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"

	"rtcp/internal/flowtest"
	"rtcp/internal/mux"
	"rtcp/protocol/yamux"
)

var _ mux.Counter = (*Framer)(nil)

// dataOnWire returns how many Data bytes for stream id the yamux frames
// in wire carry, counting those of a frame cut short: a yamux peer hands
// on a frame's bytes as they arrive (hashicorp/yamux's readData copies
// them into the stream's buffer, and they are read after the session
// ends; mux's DataSplitter pushes them).
func dataOnWire(wire []byte, id uint32) int {
	n := 0
	for len(wire) >= yamux.HeaderLen {
		h, err := yamux.ParseHeader(wire)
		if err != nil {
			return -1
		}
		wire = wire[yamux.HeaderLen:]
		if h.Type != yamux.TypeData {
			continue
		}
		k := min(int(h.Length), len(wire))
		if h.StreamID == id {
			n += k
		}
		wire = wire[k:]
	}
	return n
}

// TestWriteCountsDataTheLinkTook cuts the link in the middle of a Data
// frame a stream writes: Write returns exactly the bytes of the frame's
// payload that the link took (a yamux peer may read them; dataOnWire),
// and an error. Both the buffered path (a small frame) and the writev
// path (a large one) are cut.
func TestWriteCountsDataTheLinkTook(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int // of the one Write, which is one frame
		took int // bytes of the frame the link takes
	}{
		{"small, part of the header", 1000, yamux.HeaderLen / 2},
		{"small, the header", 1000, yamux.HeaderLen},
		{"small, part of the data", 1000, yamux.HeaderLen + 500},
		{"small, all but the last byte", 1000, yamux.HeaderLen + 999},
		{"large, part of the header", 64 << 10, yamux.HeaderLen / 2},
		{"large, part of the data", 64 << 10, yamux.HeaderLen + 30000},
		{"large, all but the last byte", 64 << 10, yamux.HeaderLen + 64<<10 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// In a bubble: synctest.Wait tells when the session has
			// written all it had to and left the link idle.
			synctest.Test(t, func(t *testing.T) {
				ca, cb := net.Pipe()
				cc := &flowtest.CutConn{Conn: ca}
				s := ours(cc, true, NewFramer(cc, cc, DefaultWindow, true), nil)
				defer s.Close()
				wire := make(chan []byte, 1)
				go func() {
					b, _ := io.ReadAll(cb)
					wire <- b
				}()
				st, err := s.Open(context.Background(), "", "")
				if err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				cc.Arm(tc.took)
				n, err := st.Write(make([]byte, tc.size))
				want := max(tc.took-yamux.HeaderLen, 0)
				if n != want || err == nil {
					t.Errorf("Write returned %d, %v; want %d and an error", n, err, want)
				}
				s.Close()
				if got := dataOnWire(<-wire, uint32(st.ID())); got != n {
					t.Errorf("the wire carries %d bytes of the stream's Data; Write reported %d", got, n)
				}
			})
		})
	}
}
