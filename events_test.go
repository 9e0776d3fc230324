package rtcp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
)

// eventLog collects a Listener's events for a test.
type eventLog struct {
	ch     chan Event
	closed atomic.Bool // the Listener's Close has returned
	late   atomic.Int32
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan Event, 1000)} }

func (el *eventLog) onEvent(e Event) {
	if el.closed.Load() {
		el.late.Add(1)
	}
	el.ch <- e
}

// next returns the next event other than EventReconnecting, which it
// checks and counts; it fails the test if none comes within an hour (of
// synctest time).
func (el *eventLog) next(t *testing.T) (e Event, reconnects int) {
	t.Helper()
	timeout := time.After(time.Hour)
	for {
		select {
		case e := <-el.ch:
			if e.Kind != EventReconnecting {
				return e, reconnects
			}
			reconnects++
			if e.Err == nil || e.Attempt < 1 || e.Backoff <= 0 {
				t.Errorf("reconnecting event without its error, attempt or backoff: %v", e)
			}
		case <-timeout:
			t.Fatal("no event within an hour")
		}
	}
}

// want checks that the next event (after any EventReconnecting) is of
// kind, with links links up.
func (el *eventLog) want(t *testing.T, kind EventKind, links int) Event {
	t.Helper()
	e, _ := el.next(t)
	if e.Kind != kind || e.Links != links || e.DP != faultDP || e.Transport != TransportYamux {
		t.Fatalf("event %v (%s), want %v with %d link(s) to %s over yamux", e, e.Transport, kind, links, faultDP)
	}
	return e
}

// TestListenerEvents: a Listener tells OnEvent, in order, of its link up
// and its name registered, of the link lost and each failed attempt to
// dial again, of the name lost to another server that took it meanwhile
// (once, however long that lasts), and of the name taken back; nothing
// after Close.
func TestListenerEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(faultDP)
		dp := &DiscoverPoint{Logger: testLogger()}
		stop := serveFault(t, dp, n)
		defer stop()
		el := newEventLog()
		lc := ListenConfig{Transport: TransportYamux, Dial: n.TapDialer("server"), Logger: testLogger(),
			MinBackoff: time.Second, MaxBackoff: 4 * time.Second, OnEvent: el.onEvent}
		l, err := lc.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		el.want(t, EventLinkUp, 1)
		el.want(t, EventRegistered, 1)

		// The link is cut, and the DP cannot be reached for a while.
		n.SetDown("server", true)
		n.Last("server").Cut()
		if e := el.want(t, EventLinkDown, 0); e.Err == nil {
			t.Error("link down without the error that ended it")
		}
		select {
		case e := <-el.ch:
			if e.Kind != EventReconnecting || e.Attempt != 1 || e.Err == nil {
				t.Fatalf("after the link went down: %v, want reconnecting, attempt 1, with the dial's error", e)
			}
		case <-time.After(time.Hour):
			t.Fatal("no reconnecting event")
		}

		// Meanwhile another server takes the name.
		synctest.Wait() // the DP has seen the link end
		other := ListenConfig{Transport: TransportYamux, Dial: n.TapDialer("other")}
		ol, err := other.Listen(context.Background(), faultDP, "printer")
		if err != nil {
			t.Fatal(err)
		}
		n.SetDown("server", false)
		e := el.want(t, EventNameLost, 0)
		if !errors.Is(e.Err, ErrNameTaken) {
			t.Errorf("name lost with %v, want ErrNameTaken", e.Err)
		}

		// An hour later it has been refused many times, and told once.
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := len(el.ch); got < 100 {
			t.Errorf("%d events in an hour of refusals, want a reconnecting event for each", got)
		}
		ol.Close()
		// The channel holds 1000: OnEvent has been blocked on it for part
		// of the hour, and the links did not wait for it.
		e, reconnects := el.next(t)
		if e.Kind != EventLinkUp || e.Links != 1 {
			t.Fatalf("after the other server left: %v, want link up", e)
		}
		if reconnects < 100 {
			t.Errorf("%d reconnecting events in an hour of refusals, want one for each", reconnects)
		}
		el.want(t, EventRegistered, 1)

		l.Close()
		el.closed.Store(true)
		synctest.Wait()
		if len(el.ch) != 0 || el.late.Load() != 0 {
			t.Errorf("%d events after Close", len(el.ch)+int(el.late.Load()))
		}
	})
}
