package mux

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"sync"
	"testing"
)

// FuzzSessionFrames feeds a session whatever frames a peer might send, in
// any order and with any values: the wires' decoders have fuzz targets of
// their own (plan5, yamuxlink, mihini, tcpipe), and this one is the
// session's state machine behind them (opens, acks, grants, data past a
// window, closes of streams that never were). Meanwhile the session's own
// side opens a stream, writes to it and reads it, and echoes each stream
// the peer opens. Whatever comes, nothing panics, and everything ends
// once the link does. The seeds are frame sequences of a well-behaved
// peer and of a few that are not (a grant past MaxInt: f5ebc76's panic).
func FuzzSessionFrames(f *testing.F) {
	frames := func(fs ...Frame) []byte {
		var b []byte
		for _, fr := range fs {
			line, err := json.Marshal(fr)
			if err != nil {
				f.Fatal(err)
			}
			b = append(append(b, line...), '\n')
		}
		return b
	}
	f.Add(frames( // the peer accepts ours, grants, sends, half-closes, closes
		Frame{Kind: KindAck, ID: 1}, Frame{Kind: KindData, ID: 1, Credit: 1 << 20},
		Frame{Kind: KindData, ID: 1, Data: []byte("hello")}, Frame{Kind: KindCloseWrite, ID: 1},
		Frame{Kind: KindClose, ID: 1}))
	f.Add(frames( // the peer opens one of its own and uses it
		Frame{Kind: KindOpen, ID: 7, Name: "x"}, Frame{Kind: KindData, ID: 7, Data: []byte("ping"), Credit: 4},
		Frame{Kind: KindKeepAlive, Ping: true}, Frame{Kind: KindClose, ID: 7, Abort: true, Reason: "bye"}))
	f.Add(frames( // grants past MaxInt
		Frame{Kind: KindAck, ID: 1}, Frame{Kind: KindData, ID: 1, Credit: math.MaxInt / 2},
		Frame{Kind: KindData, ID: 1, Credit: math.MaxInt / 2}, Frame{Kind: KindData, ID: 1, Credit: math.MaxInt}))
	f.Add(frames( // data past the window, on streams that are not there, negative credit
		Frame{Kind: KindData, ID: 3, Data: make([]byte, 70<<10)}, Frame{Kind: KindAck, ID: 1},
		Frame{Kind: KindData, ID: 1, Credit: -5}, Frame{Kind: KindData, ID: 1, Data: make([]byte, 70<<10)},
		Frame{Kind: KindAck, ID: 1}, Frame{Kind: KindCloseWrite, ID: 9}))
	f.Add(frames( // a refusal, a second ack, a Rest without a splitter
		Frame{Kind: KindAck, ID: -1, Reason: "no"}, Frame{Kind: KindAck, ID: 2}, Frame{Kind: KindData, ID: 2, Rest: 100}))
	f.Add([]byte("{\"Kind\":99}\n{\"Kind\":3,\"ID\":1,\"Data\":\"!!\"}\nnot json"))

	f.Fuzz(func(t *testing.T, in []byte) {
		ca, cb := net.Pipe()
		s := New(ca, newJSONFramer(ca), flowConfig(64<<10))
		var wg sync.WaitGroup
		wg.Go(func() { // the peer's streams, echoed
			for {
				st, err := s.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					io.Copy(st, st)
					st.Close()
				})
			}
		})
		wg.Go(func() { // our stream: a write of more than a window, and reads
			st, err := s.Open(context.Background(), "x", "")
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(io.Discard, st) })
			st.Write(make([]byte, 100<<10))
			st.CloseWrite()
		})
		defer func() { // also after a Fatalf: nothing is left running
			cb.Close()
			s.Close()
			wg.Wait()
		}()
		// Our open is on the link before the peer's first frame, so
		// that an Ack in the input answers it. (The session sends
		// nothing else first, whatever the input: no keep-alive.)
		if fr, err := newJSONFramer(cb).ReadFrame(); err != nil || fr.Kind != KindOpen {
			t.Fatalf("the session's first frame is %+v, %v; want its open", fr, err)
		}
		wg.Go(func() { io.Copy(io.Discard, cb) }) // what the session sends
		cb.Write(in)                              // until the session has read it all, or ended the link
	})
}
