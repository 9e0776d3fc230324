package rtcp

import (
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// Keepalive: every link (a server's link to its DP, a JSON client's
// connection to the DP) notices a peer that died without closing, or a
// path that silently drops everything, within twice the keepalive period
// of the side that notices, and ends with an error: its sessions fail,
// never with io.EOF, and a Listener dials again.
//
// On the JSON transport the Aloha's HeartBeat carries the period each
// side wants to hear from its peer at, and heartbeats are mid-link Alohas
// (internal/plan5link, SPEC.md "HeartBeat"). On a yamux link each side
// pings at its own period (yamux's keepalive), and the pong, or anything
// else, must arrive within twice that. Raw client legs and data links
// carry only the session's bytes: they rely on TCP's keepalive.

// defaultKeepAlive is the keepalive period when none is configured: a
// silent peer is noticed within 30 s.
const defaultKeepAlive = 15 * time.Second

// keepAlivePeriod returns the period for a configured KeepAlive: zero means
// the default, a negative value none.
func keepAlivePeriod(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaultKeepAlive
	case d < 0:
		return 0
	}
	return max(d, plan5link.MinHeartBeat)
}

// startKeepAlive arms a JSON link's keepalive once its handshake is over
// (the handshake's deadline cleared): ir gives the link up after silence,
// s sends heartbeats. s may be nil when it starts them itself.
func startKeepAlive(ir *mux.IdleReader, s *mux.Session, ours, theirs *plan5.Aloha) {
	send, idle := plan5link.KeepAlive(ours, theirs)
	ir.SetIdleTimeout(idle)
	if s != nil {
		s.SetKeepAlive(send)
	}
}
