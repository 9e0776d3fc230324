package mux

import (
	"errors"
	"io"
	"strings"
	"testing"

	"rtcp/internal/flowtest"
)

// TestFarCutEndsABlockedPush: a stream relayed with PushTo or PushAsync
// into a TCP connection whose peer reads nothing is blocked writing to it
// when the stream is cut from the far side: its link is lost, or its peer
// aborts it. The push must end at once with the cut's error, as it does
// for the session's own cut (TestCutReachesABlockedWriteTo): else the
// relay, its client's connection and the stream's buffers are held until
// the client reads or goes. The destination's write deadline is clear
// after it, and, for an abort, the session's other streams go on.
func TestFarCutEndsABlockedPush(t *testing.T) {
	for _, via := range pushVias {
		for _, end := range []string{"link lost", "peer abort"} {
			t.Run(via+"/"+end, func(t *testing.T) { testFarCutEndsABlockedPush(t, via, end) })
		}
	}
}

func testFarCutEndsABlockedPush(t *testing.T, via, end string) {
	l := tcpLink(t, flowConfig(256<<10))
	defer l.close()
	x, y := l.open(t)
	defer x.Close()
	defer y.Close()
	o1, o2 := l.open(t)
	defer o1.Close()
	defer o2.Close()

	dest, peer := flowtest.StalledPair(t)
	defer dest.Close()
	defer peer.Close()
	pushed := startPush(y, via, dest, nil)
	wrote := make(chan error, 1)
	go func() { wrote <- writePattern(x, 0, 1<<40, 16<<10, nil) }()
	flowtest.WaitParked(t, hangBound, "(*Stream).pushRun", "IO wait")

	switch end {
	case "link lost":
		l.ca.Close() // the connection under the writer's session
	case "peer abort":
		x.Abort(errors.New("disk on fire"))
	}
	r := recvOrHang(t, pushed, via+"'s return after the "+end)
	switch end {
	case "link lost":
		if r.err == nil || errors.Is(r.err, io.EOF) || !strings.Contains(r.err.Error(), "lost") {
			t.Errorf("%s returned %v after the link's loss, want the lost link", via, r.err)
		}
	case "peer abort":
		var ae *AbortError
		if !errors.As(r.err, &ae) || ae.Reason != "disk on fire" {
			t.Errorf("%s returned %v after the peer's abort, want its AbortError", via, r.err)
		}
	}
	// The destination is still usable: no write deadline is left on it.
	go io.Copy(io.Discard, peer)
	if _, err := dest.Write([]byte("after")); err != nil {
		t.Errorf("a write to the destination after the push: %v", err)
	}
	if err := recvOrHang(t, wrote, "the writer's return"); err == nil {
		t.Error("the stream's writer had no error after the cut")
	}
	if end == "peer abort" {
		if err := echo(o1, o2, 256<<10); err != nil {
			t.Errorf("another stream after the abort: %v", err)
		}
	}
}
