package rtcp

import (
	"net"

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
