package rtcp

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Bounds of a DiscoverPoint. Each is a field of DiscoverPoint (zero means
// the default below); reaching one refuses only the peer that asked, with
// a reason, and leaves every other peer alone. Besides these: the
// handshake timeout (HandshakeTimeout, 10 s), the longest JSON line
// (MaxLine, 64 KiB), per link the opens waiting for the server's answer
// (1024) and the sessions one yamux link carries (8192), per control
// link of TransportTCP the spare data links held idle (maxSparesPerLink,
// 4; a server's spares together are bounded by MaxLinksPerOwner too), and
// per source address the connections in their handshake
// (MaxHandshakesPerSource, 64) and the failed authentications a minute
// (MaxAuthFailuresPerSource, 30; sourcelimit.go), and the names counted
// on their own in Status (MaxNameStats, 1000; status.go). A ConnBudget
// bounds the connections of all of a program's doors together.
const (
	defaultMaxSessionsPerServer = 10000
	defaultMaxPendingConnects   = 1024
	defaultMaxNames             = 100000
	defaultMaxLinksPerOwner     = 64
)

// initLimits fills in the default bounds; init calls it once.
func (dp *DiscoverPoint) initLimits() {
	setDefault(&dp.MaxSessionsPerServer, defaultMaxSessionsPerServer)
	setDefault(&dp.MaxPendingConnects, defaultMaxPendingConnects)
	setDefault(&dp.MaxNames, defaultMaxNames)
	setDefault(&dp.MaxLinksPerOwner, defaultMaxLinksPerOwner)
	dp.counts.perServer = make(map[string]int)
	dp.counts.pending = make(map[string]int)
	dp.counts.spares = make(map[string]int)
	dp.counts.sources.init(dp.MaxHandshakesPerSource, dp.MaxAuthFailuresPerSource)
	dp.counts.names.init(dp.MaxNameStats)
	dp.counts.started = time.Now()
}

func setDefault(p *int, def int) {
	if *p <= 0 {
		*p = def
	}
}

// limitError refuses a peer because a bound of the DP was reached.
type limitError struct {
	kind refusal
	msg  string
}

func (e *limitError) Error() string { return e.msg }

// errShuttingDown refuses a session while the DP shuts down.
var errShuttingDown = errors.New("rtcp: the DP is shutting down; retry on another DP or later")

// noServerError is the refusal of a name nobody serves here.
type noServerError struct{ name string }

func (e *noServerError) Error() string {
	return fmt.Sprintf("rtcp: no server named %q is registered at this DP", e.name)
}

func (e *noServerError) Is(target error) bool { return target == ErrNoServer }

// beginSession counts a client session of the server name, or refuses it:
// during shutdown, or when name has MaxSessionsPerServer already. Call end
// when the session is over.
func (dp *DiscoverPoint) beginSession(name string) (end func(), err error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.shutdown {
		return nil, errShuttingDown
	}
	if n := dp.counts.perServer[name]; n >= dp.MaxSessionsPerServer {
		return nil, &limitError{refusedMaxSessions, fmt.Sprintf(
			"rtcp: server %q already has %d sessions through this DP, its limit (MaxSessionsPerServer); retry later", name, n)}
	}
	dp.sessions++
	dp.counts.perServer[name]++
	return func() { dp.endSession(name) }, nil
}

func (dp *DiscoverPoint) endSession(name string) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.counts.perServer[name]--; dp.counts.perServer[name] <= 0 {
		delete(dp.counts.perServer, name)
	}
	dp.sessions--
	if dp.sessions == 0 && dp.idle != nil {
		select {
		case <-dp.idle:
		default:
			close(dp.idle)
		}
	}
}

// beginOpen counts a session being opened to the server name (its Connect
// on the way, no answer yet), or refuses it at MaxPendingConnects.
func (dp *DiscoverPoint) beginOpen(name string) (done func(), err error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if n := dp.counts.pending[name]; n >= dp.MaxPendingConnects {
		return nil, &limitError{refusedMaxPending, fmt.Sprintf(
			"rtcp: %d sessions to server %q are already waiting for it to answer, the limit (MaxPendingConnects); retry later", n, name)}
	}
	dp.counts.pending[name]++
	return func() {
		dp.mu.Lock()
		defer dp.mu.Unlock()
		if dp.counts.pending[name]--; dp.counts.pending[name] <= 0 {
			delete(dp.counts.pending, name)
		}
	}, nil
}

// linkLimits are the bounds of the link table.
func (dp *DiscoverPoint) linkLimits() linkLimits {
	return linkLimits{maxNames: dp.MaxNames, maxLinksPerOwner: dp.MaxLinksPerOwner}
}

// countSpares adds n to owner's spare data links (n < 0 removes): those
// idle at the DP and those in their handshake, bounded by
// MaxLinksPerOwner apart from its links, so that spares never crowd out a
// link.
func (dp *DiscoverPoint) countSpares(owner string, n int) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	dp.countSparesLocked(owner, n)
}

func (dp *DiscoverPoint) countSparesLocked(owner string, n int) {
	if dp.counts.spares[owner] += n; dp.counts.spares[owner] <= 0 {
		delete(dp.counts.spares, owner)
	}
}

// refuseLink tells a server why its link is refused by a bound of the DP,
// and counts the refusal.
func (dp *DiscoverPoint) refuseLink(c net.Conn, name string, err error) {
	dp.refusedOpen(name, err)
	dp.log().Warn("rtcp: server link refused", "name", name, "remote", c.RemoteAddr(), "reason", err)
	dp.refuse(c, err.Error())
}
