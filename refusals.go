package rtcp

import (
	"net"

	"rtcp/internal/tcpreset"
	"rtcp/protocol/plan5"
)

// refuseToken refuses a data or spare link whose token the DP does not
// know, counting and logging it. It is not a failed authentication for
// MaxAuthFailuresPerSource: a token is 128 random bits, and a slow
// server's data link that arrives after its session gave up has one the
// DP has forgotten.
func (dp *DiscoverPoint) refuseToken(c net.Conn, a *plan5.Aloha, reason string) {
	dp.refused(refusedDataToken)
	dp.log().Info("rtcp: data link refused", "remote", c.RemoteAddr(), "transport", a.Transport, "reason", reason)
	dp.refuse(c, reason)
}

// resetWhenClosed makes c, a TCP connection or one over it (TLS, on a
// listener that a caller of ServePort made so), end with a reset when it
// is closed. A port-mode client has no other way to learn that it was
// refused, or cut, rather than served to the end; a relay that ends
// cleanly undoes it.
func resetWhenClosed(c net.Conn) {
	tcpreset.SetReset(tcpreset.Under(c), true)
}
