package plan5link

import (
	"bytes"
	"testing"
	"time"

	"rtcp/internal/mux"
	"rtcp/protocol/plan5"
)

// writeLog records each Write and when it came.
type writeLog struct {
	writes [][]byte
	at     []time.Time
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	w.at = append(w.at, time.Now())
	return len(p), nil
}

// TestLegacyFramer: toward a peer that announced the legacy version a
// Framer writes each message with a write of its own, LegacyGap apart,
// and Config gives Data of at most LegacyChunkSize; toward any other
// peer it gathers messages until Flush.
func TestLegacyFramer(t *testing.T) {
	frames := []*mux.Frame{
		{Kind: mux.KindAck, ID: 1},
		{Kind: mux.KindData, ID: 1, Data: []byte("hello")},
		{Kind: mux.KindClose, ID: 1},
	}
	for _, legacy := range []bool{false, true} {
		var w writeLog
		fr := NewFramer(plan5.NewReader(bytes.NewReader(nil), 0), &w)
		fr.SetLegacy(legacy)
		began := time.Now()
		for _, f := range frames {
			if err := fr.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		fr.Flush()
		want := 1
		if legacy {
			want = len(frames)
		}
		if len(w.writes) != want {
			t.Fatalf("legacy %v: %d writes %q, want %d", legacy, len(w.writes), w.writes, want)
		}
		if legacy {
			for i, at := range w.at {
				if gap := at.Sub(began); gap < LegacyGap {
					t.Errorf("write %d came %v after the one before, want at least %v", i, gap, LegacyGap)
				}
				began = at
			}
		}
	}
	ours := &plan5.Aloha{V: plan5.Version, Window: DefaultWindow, MaxLine: plan5.DefaultMaxLine}
	for v, want := range map[int]int{
		plan5.LegacyVersion: LegacyChunkSize,
		plan5.Version:       plan5.ChunkSize(plan5.PlainMaxLine),
	} {
		if got := Config(ours, &plan5.Aloha{V: v}).ChunkSize; got != want {
			t.Errorf("toward a peer of version %d: ChunkSize %d, want %d", v, got, want)
		}
	}
	if n := len(plan5.AppendMessage(nil, &plan5.Data{X: -1 << 63, C: make([]byte, LegacyChunkSize)})); n-len("3\n\n") > 2765 {
		t.Errorf("a legacy Data line is %d bytes, want at most 2765", n-len("3\n\n"))
	}
}
