package rtcp

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// The DP's reading of a brokered session (protocol/plan5/SPEC.md "Direct
// sessions"): it relays each direction's records as they come, a chunk at
// a time, never waiting for a whole record, and reads them as they pass,
// so that it knows which sessions moved to their direct path. A direction
// that goes unframed ('u') is relayed as it is from there on, with the
// relay's fast paths. One that moved ('m') may send nothing more on the
// relay but its side's report, at its Close ('c' and the count of bytes
// it wrote on the direct connection), which the DP counts and passes on
// to no one, and then its end. Bytes that break these rules cut that
// session only (relay.JoinScanned cuts both sides with the scanner's
// error, which the DP logs). A failure to pass a direction's bytes on is
// the fault of the side they go to (brokeredWriteError), and is logged so.

// errMovedUnreported is the error of a brokered session whose side's
// relay ended after that side's 'm' without its report.
var errMovedUnreported = errors.New("rtcp: a brokered session's relay ended after its side moved to the direct connection, without the report of its Close")

// States of one direction's records, as the DP reads them.
const (
	scanHeader   = iota // at a record boundary: a type comes next
	scanLength          // a data record's length: hn of its 2 bytes read
	scanPayload         // a data record's payload: left bytes to come
	scanPlain           // after 'u': the bytes as they are, unread
	scanMoved           // after 'm': the report comes next, then the end
	scanReport          // the report's count: hn of its 8 bytes read
	scanReported        // after the report: nothing more but the end
	scanBroken          // the direction broke the rules: the scanner's error cut the session
)

// recordScanner reads one direction of a brokered session's relay for
// relay.JoinScanned. Its calls come from the one goroutine of its
// direction.
type recordScanner struct {
	from   string         // "client" or "server": whose records, for errors
	moved  func()         // called once 'm' has passed
	report func(n uint64) // called with the count of a whole report
	state  int
	hn     int    // length or count bytes read
	length int    // a data record's length, as read so far
	left   int    // payload bytes to come
	count  uint64 // the report's count, as read so far
	path   string // how the direction ended: "moved", "unframed" ('u'); "" while framed
}

// pathName says how the direction went, for the DP's log: "moved" (to
// the direct connection), "unframed" (the punch failed: 'u'), or
// "framed" (it ended on the relay before either).
func (r *recordScanner) pathName() string { return cmp.Or(r.path, "framed") }

// Scan reads p, the next bytes of the direction, and returns how many of
// its first bytes the DP passes on.
func (r *recordScanner) Scan(p []byte) (int, error) {
	for i := 0; i < len(p); {
		switch r.state {
		case scanHeader:
			switch p[i] {
			case recData:
				r.state, r.hn, r.length = scanLength, 0, 0
				i++
			case recRaw:
				r.state, r.path = scanPlain, "unframed"
				return len(p), nil
			case recMoved:
				r.state, r.path = scanMoved, "moved"
				if r.moved != nil {
					r.moved()
				}
				i++
			default:
				return i, r.errorf("a record of type %q, not d, m or u", p[i])
			}
		case scanLength:
			r.length = r.length<<8 | int(p[i])
			r.hn++
			i++
			if r.hn == 2 {
				if r.length == 0 {
					return i, r.errorf("an empty data record")
				}
				r.state, r.left = scanPayload, r.length
			}
		case scanPayload:
			k := min(len(p)-i, r.left)
			i += k
			r.left -= k
			if r.left == 0 {
				r.state = scanHeader
			}
		case scanPlain:
			return len(p), nil
		case scanMoved:
			// Nothing after 'm' is passed on: the peer reads no more.
			if p[i] != recReport {
				return i, r.errorf("%q after its moved record, where only its report (%q) may come", p[i], recReport)
			}
			r.state, r.hn, r.count = scanReport, 0, 0
			return i, r.rest(p[i+1:])
		case scanReport, scanReported:
			return i, r.rest(p[i:])
		case scanBroken:
			// The relay stops at the first error; a call after it
			// must not spin here.
			return 0, fmt.Errorf("rtcp: the %s's records on a brokered session: bytes after the DP cut the session", r.from)
		}
	}
	return len(p), nil
}

// rest reads p, bytes of the direction after its 'm', which the DP
// passes on to no one: the report and nothing more.
func (r *recordScanner) rest(p []byte) error {
	for i, b := range p {
		if r.state == scanReported {
			return r.errorf("%d bytes after its report, which ends the direction", len(p)-i)
		}
		r.count = r.count<<8 | uint64(b)
		r.hn++
		if r.hn == reportLen-1 {
			r.state = scanReported
			if r.report != nil {
				r.report(r.count)
			}
		}
	}
	return nil
}

// Plain reports whether the direction went unframed.
func (r *recordScanner) Plain() bool { return r.state == scanPlain }

// End checks that the direction ended where it may: at a record boundary,
// unframed, or moved and reported.
func (r *recordScanner) End() error {
	switch r.state {
	case scanLength, scanPayload, scanReport:
		return r.errorf("the relayed session ended inside a record")
	case scanMoved:
		r.state = scanBroken
		return r.unreported(nil)
	}
	return nil
}

// failure returns err, the error that ended the session on this
// direction's side of the relay (its source failed), as the error of a
// relay that ended unreported if it came after 'm' and before the
// report: the side's relay was reset or lost, not its records wrong.
func (r *recordScanner) failure(err error) error {
	if r.state != scanMoved {
		return err
	}
	return r.unreported(err)
}

// A brokeredWriteError is the failure of a brokered session's side's
// connection (to: "client" or "server") as the DP wrote the other side's
// bytes to it: that side, not the one whose bytes they were, is to blame.
type brokeredWriteError struct {
	to, from string
	err      error
}

func (e *brokeredWriteError) Error() string {
	return fmt.Sprintf("rtcp: the %s's connection of a brokered session failed as the DP passed the %s's bytes on to it: %v", e.to, e.from, e.err)
}

func (e *brokeredWriteError) Unwrap() error { return e.err }

// unreported is the error of a direction whose relay ended, cleanly
// (cause nil) or not, after its 'm' and before its report.
func (r *recordScanner) unreported(cause error) error {
	const why = ": the %s died, aborted the session, or could not write the report in time; the DP cut the relay, and the bytes the %s wrote on the direct connection go uncounted"
	if cause == nil {
		return fmt.Errorf("%w (the %s's)"+why, errMovedUnreported, r.from, r.from, r.from)
	}
	return fmt.Errorf("%w (the %s's: %w)"+why, errMovedUnreported, r.from, cause, r.from, r.from)
}

// errorf is the error of records that break the rules; the scanner reads
// no more.
func (r *recordScanner) errorf(format string, a ...any) error {
	r.state = scanBroken
	return fmt.Errorf("rtcp: the %s's records on a brokered session: "+format+"; the DP cut the session (a side that died, or that speaks another version of direct sessions: update it, or run it without Direct)", append([]any{r.from}, a...)...)
}

// brokeredRelay is the DP's reading of both directions of one brokered
// session, and its counts.
type brokeredRelay struct {
	dp       *DiscoverPoint
	moved    atomic.Int32  // directions that sent 'm'
	reported atomic.Uint64 // the bytes both sides' reports count
	toServer recordScanner
	toClient recordScanner
}

func (dp *DiscoverPoint) newBrokeredRelay() *brokeredRelay {
	b := &brokeredRelay{dp: dp}
	b.toServer = recordScanner{from: "client", moved: b.directionMoved, report: b.report}
	b.toClient = recordScanner{from: "server", moved: b.directionMoved, report: b.report}
	return b
}

// report counts a side's report: bytes it says it wrote on the direct
// connection (the DP cannot check it).
func (b *brokeredRelay) report(n uint64) {
	addSaturating(&b.reported, n)
	addSaturating(&b.dp.counts.directBytes, n)
}

// addSaturating adds n to c, stopping at the largest uint64: a count of
// 8 bytes from the network may be anything, and a counter that wrapped
// round would go back (a monitor takes that for a restart).
func addSaturating(c *atomic.Uint64, n uint64) {
	for {
		old := c.Load()
		sum := old + n
		if sum < old {
			sum = math.MaxUint64
		}
		if c.CompareAndSwap(old, sum) {
			return
		}
	}
}

// directionMoved counts the session as moved once both directions have.
func (b *brokeredRelay) directionMoved() {
	if b.moved.Add(1) == 2 {
		b.dp.counts.directMoved.Add(1)
	}
}

// How a brokered session went, for the DP's counts and log: the label
// values of rtcp_dp_direct_sessions_total's path.
const (
	pathMoved   = "moved"   // both directions moved (DirectMoved)
	pathPartly  = "partly"  // one direction moved, the other ended on the relay (DirectPartly)
	pathRelayed = "relayed" // neither moved (DirectRelayed)
)

// ended counts a session that ended without moving both ways (one that
// did was counted at its move), and returns how it went.
func (b *brokeredRelay) ended() string {
	switch b.moved.Load() {
	case 2:
		return pathMoved
	case 1:
		b.dp.counts.directPartly.Add(1)
		return pathPartly
	}
	b.dp.counts.directRelayed.Add(1)
	return pathRelayed
}
