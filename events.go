package rtcp

import (
	"fmt"
	"sync"
	"time"
)

// An EventKind says what changed in a Listener's links to its DP.
type EventKind int

const (
	// EventLinkUp: a link to the DP is up, its name registered on it.
	EventLinkUp EventKind = iota + 1
	// EventLinkDown: a link to the DP ended (Err says why); the Listener
	// dials again. Links is 0 when it was the last one to that DP.
	EventLinkDown
	// EventRegistered: the DP serves the name again after a time when
	// no link held it: the first link, after every link was lost, or
	// after the name was lost. It follows the EventLinkUp of that link.
	EventRegistered
	// EventNameLost: the DP refused the name to a link dialled again,
	// because another server took it meanwhile (Err matches
	// ErrNameTaken). Clients of the name reach that server now; this one
	// keeps dialling, and takes the name back (EventRegistered) if the
	// other server lets it go. Only the change is reported, once.
	EventNameLost
	// EventReconnecting: an attempt to reach the DP failed (Err says
	// why; Attempt counts the failures in a row, from 1), and the next
	// comes after Backoff.
	EventReconnecting
	// EventDirect: a session that the DP brokered for a direct path
	// (ListenConfig.Direct) has its path: Err nil, it moved to a direct
	// connection to its client (both directions); else Err says why it
	// stays on the relay (a failed punch, or the session ended before it
	// moved), or why it failed.
	EventDirect
)

var eventKindNames = [...]string{
	EventLinkUp:       "link up",
	EventLinkDown:     "link down",
	EventRegistered:   "registered",
	EventNameLost:     "name lost",
	EventReconnecting: "reconnecting",
	EventDirect:       "direct",
}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// An Event is a change in a Listener's links or in its name's
// registration, for ListenConfig.OnEvent.
type Event struct {
	Kind EventKind
	// DP is the address of the DP concerned (one of the list, for a
	// Listener on a cluster).
	DP string
	// Transport is the links' transport.
	Transport Transport
	// Links is the number of links to DP that are up after the event.
	Links int
	// Err: why the link ended (EventLinkDown), why the DP refused the
	// name (EventNameLost), why the attempt failed (EventReconnecting).
	Err error
	// Attempt and Backoff: the failures in a row, and the wait before
	// the next attempt (EventReconnecting).
	Attempt int
	Backoff time.Duration
}

func (e Event) String() string {
	s := fmt.Sprintf("%v: DP %s, %d link(s)", e.Kind, e.DP, e.Links)
	if e.Kind == EventReconnecting {
		s += fmt.Sprintf(", attempt %d, next in %v", e.Attempt, e.Backoff)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// eventQueue hands a Listener's events to ListenConfig.OnEvent from one
// goroutine, in order, so that a slow OnEvent never holds up a link: the
// events wait in the queue meanwhile. A nil queue drops every event.
type eventQueue struct {
	fn   func(Event)
	wake chan struct{} // a send on it wakes run up; capacity 1
	done chan struct{} // closed when run has returned

	mu     sync.Mutex // guards q and closed
	q      []Event
	closed bool
}

// newEventQueue returns a queue that calls fn, or nil if fn is nil.
func newEventQueue(fn func(Event)) *eventQueue {
	if fn == nil {
		return nil
	}
	q := &eventQueue{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

// emit queues e. Events after close are dropped.
func (q *eventQueue) emit(e Event) {
	if q == nil {
		return
	}
	q.mu.Lock()
	if !q.closed {
		q.q = append(q.q, e)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close delivers the events queued so far, then ends the goroutine and
// returns once it has ended.
func (q *eventQueue) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}

func (q *eventQueue) run() {
	defer close(q.done)
	for range q.wake {
		for {
			q.mu.Lock()
			batch, closed := q.q, q.closed
			q.q = nil
			q.mu.Unlock()
			for _, e := range batch {
				q.fn(e)
			}
			if closed && len(batch) == 0 {
				return
			}
			if len(batch) == 0 {
				break
			}
		}
	}
}
