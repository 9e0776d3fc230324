package rtcp

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
)

// Stats is a snapshot of what a DiscoverPoint is doing, for monitoring
// (rtcp/dpmetrics serves it to Prometheus).
type Stats struct {
	Conns    int `json:"connections"` // connections open: links, clients, handshakes under way
	Servers  int `json:"servers"`     // names with at least one link here
	Links    int `json:"links"`       // server links up (and links added with AddLink)
	Sessions int `json:"sessions"`    // client sessions being opened or relayed now

	SessionsTotal  uint64 `json:"sessions_total"`   // sessions relayed since the DP started
	BytesToServers uint64 `json:"bytes_to_servers"` // bytes relayed from clients to servers
	BytesToClients uint64 `json:"bytes_to_clients"` // bytes relayed from servers to clients

	// Direct sessions (docs/direct.md): DirectBrokered counts the
	// sessions whose client and server both asked for a direct path and
	// were told each other's address; each starts on the relay and may
	// move to the direct path. Of those, DirectMoved counts the sessions
	// that moved both ways (counted at the move, read in the records the
	// DP relays); DirectPartly those that ended with one direction moved
	// and the other on the relay (it wrote all it had, or half-closed,
	// before its side's punch ended); and DirectRelayed those that ended
	// with neither moved (a punch failed, directions that never wrote
	// after their punch, or an end or a cut first). Once every brokered
	// session has ended, DirectBrokered is the sum of the three. Bytes
	// relayed are in the Bytes counts.
	// DirectBytes counts the bytes that the sides of brokered sessions
	// say they wrote on their direct connection, which never reach the
	// DP: each side reports its count on the relay when it closes the
	// session (self-reported: the DP cannot check it, and the count stops
	// at 2^64-1 rather than wrap round).
	DirectBrokered uint64 `json:"direct_brokered"`
	DirectMoved    uint64 `json:"direct_moved"`
	DirectPartly   uint64 `json:"direct_partly"`
	DirectRelayed  uint64 `json:"direct_relayed"`
	DirectBytes    uint64 `json:"direct_bytes"`

	// PacedSeconds is the time sessions have waited for the bandwidth
	// limits of the Policy (Limits.BytesPerSecond), summed over sessions
	// and directions.
	PacedSeconds float64 `json:"paced_seconds"`

	// Refused counts refusals by reason since the DP started, one key for
	// each of RefusalReasons (zeros included).
	Refused map[string]uint64 `json:"refused"`
}

// A refusal is why the DP turned a peer or a session away.
type refusal int

const (
	refusedHandshake          refusal = iota // no valid Aloha or Connect in time
	refusedVersion                           // an incompatible protocol version
	refusedUnauthorized                      // the Policy said no
	refusedNameTaken                         // another server holds the name
	refusedRegistry                          // the Registry failed
	refusedNoServer                          // nobody serves the name asked for
	refusedServer                            // the server refused, or its links failed
	refusedShutdown                          // the DP is shutting down
	refusedMaxNames                          // MaxNames reached
	refusedMaxLinks                          // MaxLinksPerOwner reached
	refusedMaxSessions                       // MaxSessionsPerServer reached
	refusedMaxPending                        // MaxPendingConnects reached
	refusedSourceHandshakes                  // MaxHandshakesPerSource reached
	refusedSourceAuthFailures                // MaxAuthFailuresPerSource reached
	refusedTLSHandshake                      // the TLS handshake failed
	refusedDataToken                         // a data or spare link's token is unknown
	refusedBadName                           // a name that is not one (names.go)
	refusedLimitSessions                     // a Limits.MaxSessions of the Policy reached
	refusedLimitRate                         // a Limits.SessionsPerSecond of the Policy reached
	numRefusals
)

// RefusalReasons are the keys of Stats.Refused.
var RefusalReasons = []string{
	refusedHandshake:          "handshake",
	refusedVersion:            "version",
	refusedUnauthorized:       "unauthorized",
	refusedNameTaken:          "name_taken",
	refusedRegistry:           "registry",
	refusedNoServer:           "no_server",
	refusedServer:             "server_refused",
	refusedShutdown:           "shutting_down",
	refusedMaxNames:           "max_names",
	refusedMaxLinks:           "max_links_per_owner",
	refusedMaxSessions:        "max_sessions_per_server",
	refusedMaxPending:         "max_pending_connects",
	refusedSourceHandshakes:   "source_handshakes",
	refusedSourceAuthFailures: "source_auth_failures",
	refusedTLSHandshake:       "tls_handshake",
	refusedDataToken:          "data_token",
	refusedBadName:            "bad_name",
	refusedLimitSessions:      "limit_sessions",
	refusedLimitRate:          "limit_session_rate",
}

// dpCounts is the DP's bookkeeping for its limits and its Stats.
type dpCounts struct {
	// Guarded by the DP's mu.
	perServer map[string]int // sessions by server name
	pending   map[string]int // opens waiting for the server's answer, by name
	spares    map[string]int // spare data links by owner (datalink.go)

	sources sourceLimits // bounds per source address, with a lock of its own (sourcelimit.go)
	names   nameStats    // counts by name, with a lock of its own (status.go)
	started time.Time    // when init ran

	sessionsTotal        atomic.Uint64
	toServers, toClients atomic.Uint64
	refused              [numRefusals]atomic.Uint64

	directBrokered                           atomic.Uint64 // discover.go
	directMoved, directPartly, directRelayed atomic.Uint64 // directrelay.go
	directBytes                              atomic.Uint64 // directrelay.go: the sides' reports
}

// Stats returns a snapshot of the DP's activity. It is cheap enough to
// call on every scrape.
func (dp *DiscoverPoint) Stats() Stats {
	dp.init()
	dp.mu.Lock()
	st := Stats{Conns: dp.g.Conns(), Sessions: dp.sessions}
	dp.mu.Unlock()
	st.Servers, st.Links = dp.links.counts()
	st.SessionsTotal = dp.counts.sessionsTotal.Load()
	st.BytesToServers = dp.counts.toServers.Load()
	st.BytesToClients = dp.counts.toClients.Load()
	st.DirectBrokered = dp.counts.directBrokered.Load()
	st.DirectMoved = dp.counts.directMoved.Load()
	st.DirectPartly = dp.counts.directPartly.Load()
	st.DirectRelayed = dp.counts.directRelayed.Load()
	st.DirectBytes = dp.counts.directBytes.Load()
	st.PacedSeconds = time.Duration(dp.limits.pacedNanos.Load()).Seconds()
	st.Refused = make(map[string]uint64, numRefusals)
	for i, name := range RefusalReasons {
		st.Refused[name] = dp.counts.refused[i].Load()
	}
	return st
}

// refused counts a refusal.
func (dp *DiscoverPoint) refused(r refusal) { dp.counts.refused[r].Add(1) }

// refusedOpen counts the refusal of a session (or a link) of the server
// name whose open failed with err.
func (dp *DiscoverPoint) refusedOpen(name string, err error) {
	var le *limitError
	var ns *noServerError
	switch {
	case errors.As(err, &le):
		dp.refusedName(le.kind, name)
	case errors.As(err, &ns):
		dp.refusedName(refusedNoServer, name)
	case errors.Is(err, ErrUnauthorized):
		dp.refusedName(refusedUnauthorized, name)
	case errors.Is(err, errShuttingDown):
		dp.refusedName(refusedShutdown, name)
	default:
		dp.refusedName(refusedServer, name)
	}
}

// join relays a client's connection and the session opened for it, and
// counts the session and its bytes: an atomic add per chunk. A brokered
// session's records are read as they pass (brokered, else nil). Between
// two TCP connections the DP's relay loop carries it, and cut's end (if
// not nil) cuts it there (relay.Loop.JoinContext).
func (dp *DiscoverPoint) join(cut context.Context, client, server net.Conn, name string, brokered *brokeredRelay) (relay.Stats, error) {
	dp.counts.sessionsTotal.Add(1)
	nc := dp.counts.names.relay(name)
	defer dp.counts.names.release(nc)
	nc.sessionsTotal.Add(1)
	count := func(toServer bool, n int) {
		if toServer {
			dp.counts.toServers.Add(uint64(n))
			nc.toServer.Add(uint64(n))
		} else {
			dp.counts.toClients.Add(uint64(n))
			nc.toClient.Add(uint64(n))
		}
	}
	var st relay.Stats
	var err error
	if brokered != nil {
		st, err = dp.joinBrokered(client, server, name, count, brokered)
	} else if relay.Loopable(client, server) {
		st, err = dp.loop.JoinContext(cut, client, server, count)
	} else {
		// Not through the loop: its frame would sit under the idle
		// wait of every stream's session (relay.Loopable).
		st, err = relay.Join(client, server, count)
	}
	dp.joinEnded(client, name, st, err)
	return st, err
}

// joinBrokered is join's relay of a brokered session. It and joinEnded
// are calls of their own so that join's frame, on the stack of every idle
// session, holds neither their locals nor their log calls' arguments
// (docs/performance.md).
func (dp *DiscoverPoint) joinBrokered(client, server net.Conn, name string, count func(bool, int), brokered *brokeredRelay) (relay.Stats, error) {
	st, err := relay.JoinScanned(client, server, count, &brokered.toServer, &brokered.toClient)
	if relay.Cut(err) {
		// Say what failed in the words of the direction it failed
		// on (the scanners are done: JoinScanned has returned).
		src, dst := &brokered.toServer, &brokered.toClient
		if !st.FailedAtoB {
			src, dst = dst, src
		}
		if st.FailedWrite {
			// The destination's connection failed as the DP
			// wrote the source's bytes to it ('m', say).
			err = &brokeredWriteError{to: dst.from, from: src.from, err: err}
		} else {
			// A moved side's relay that ends unreported is no
			// fault of its records.
			err = src.failure(err)
		}
	}
	path := brokered.ended()
	moved := path == pathMoved
	dp.log().Debug("rtcp: brokered session ended", "server", name, "client", client.RemoteAddr(), "moved", moved, "path", path,
		"client_path", brokered.toServer.pathName(), "server_path", brokered.toClient.pathName(), "direct_bytes", brokered.reported.Load())
	if dp.brokeredEnded != nil {
		dp.brokeredEnded(moved)
	}
	return st, err
}

// joinEnded logs the end of a session that join relayed.
func (dp *DiscoverPoint) joinEnded(client net.Conn, name string, st relay.Stats, err error) {
	var logged *mux.CutError
	if relay.Cut(err) && !errors.As(err, &logged) {
		dp.log().Warn("rtcp: session cut", "server", name, "client", client.RemoteAddr(),
			"to_server", st.AtoB, "to_client", st.BtoA, "reason", err)
	} else {
		dp.log().Debug("rtcp: session ended", "server", name, "client", client.RemoteAddr())
	}
}
