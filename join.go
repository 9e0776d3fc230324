package rtcp

import (
	"fmt"
	"net"

	"rtcp/internal/relay"
)

// Join copies a to b and b to a until both directions end, then closes
// both: what a relay between an rtcp session and a plain connection does
// (rtcp expose joins each accepted Conn to a TCP connection it dials,
// rtcp connect the other way round). It returns the bytes copied each way
// and the first error.
//
// The end of one direction is passed on: when a reaches its end, b is
// half-closed (CloseWrite), and the other way round, so a peer that
// half-closes gets its answer; a side that cannot half-close is closed.
// When a copy fails, both sides are cut off with an error their peers see
// (a Conn is aborted, a TCP connection reset), so neither takes the cut
// for a clean end. The error says which way the failed copy went, by the
// sides' remote addresses, and wraps what failed.
//
// Join moves the bytes without copying them through the program where it
// can: between TCP connections (a Conn's raw leg or data link, see
// Conn.Unwrap) the kernel splices them on Linux, and a Conn on a
// multiplexed link hands its bytes on from the link's reader.
func Join(a, b net.Conn) (aToB, bToA int64, err error) {
	st, err := relay.Join(a, b, nil)
	if err != nil {
		from, to := a, b
		if !st.FailedAtoB {
			from, to = b, a
		}
		err = fmt.Errorf("rtcp: relaying from %v to %v: %w", from.RemoteAddr(), to.RemoteAddr(), err)
	}
	return st.AtoB, st.BtoA, err
}
