package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
)

// recordingFramer is a jsonFramer that reports every frame it writes.
type recordingFramer struct {
	*jsonFramer
	wrote chan Frame
}

func (fr *recordingFramer) WriteFrame(f *Frame) error {
	fr.wrote <- Frame{Kind: f.Kind, ID: f.ID, Addr: f.Addr}
	return fr.jsonFramer.WriteFrame(f)
}

// portIDs is a NextID that makes the open's address the stream ID, as
// tcpipe's port is.
func portIDs(name, addr string, inUse func(int64) bool) (int64, error) {
	id, err := strconv.ParseInt(addr, 10, 64)
	if err != nil {
		return 0, err
	}
	if inUse(id) {
		return 0, errors.New("in use")
	}
	return id, nil
}

// TestOpenerAssignsIDFromAddr checks that NextID sees the open's address
// and that its ID reaches the peer, with no Ack on the wire.
func TestOpenerAssignsIDFromAddr(t *testing.T) {
	sem := Semantics{OpenerAssignsID: true, NextID: portIDs}
	l := newWireLink(t, sem, Config{}, Config{})
	defer l.close()
	a, err := l.a.Open(context.Background(), "", "40000")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != 40000 {
		t.Errorf("opened stream has ID %d, want 40000 from its address", a.ID())
	}
	b, err := l.b.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if b.ID() != 40000 || b.Addr() != "40000" {
		t.Errorf("accepted stream has ID %d, addr %q; want 40000, \"40000\"", b.ID(), b.Addr())
	}
	if _, err := l.a.Open(context.Background(), "", "40000"); err == nil {
		t.Error("a second Open with an ID in use succeeded")
	}
}

// TestAnswerClose checks that with AnswerClose a Close from the peer is
// answered with one Close, and that without it nothing is answered.
func TestAnswerClose(t *testing.T) {
	for _, answer := range []bool{false, true} {
		t.Run("AnswerClose="+strconv.FormatBool(answer), func(t *testing.T) {
			ca, cb := net.Pipe()
			cfg := Config{}
			sem := Semantics{OpenerAssignsID: true, NextID: portIDs, AnswerClose: answer}
			frA, frB := newJSONFramer(ca), &recordingFramer{newJSONFramer(cb), make(chan Frame, 16)}
			frA.sem, frB.sem = sem, sem
			a := New(ca, frA, cfg)
			b := New(cb, frB, cfg)
			st, err := a.Open(context.Background(), "", "7")
			if err != nil {
				t.Fatal(err)
			}
			atB, err := b.Accept()
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			if _, err := atB.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after the peer's Close: %v, want io.EOF", err)
			}
			// The stream is over at B: its own Close sends nothing more.
			atB.Close()
			a.Close()
			b.Close()
			close(frB.wrote)
			var closes int
			for f := range frB.wrote {
				if f.Kind == KindClose && f.ID == 7 {
					closes++
				}
			}
			want := 0
			if answer {
				want = 1
			}
			if closes != want {
				t.Errorf("B wrote %d Close frames for stream 7, want %d", closes, want)
			}
		})
	}
}
