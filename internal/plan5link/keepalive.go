package plan5link

import (
	"time"

	"rtcp/protocol/plan5"
)

// Keepalive on a Plan5 link (SPEC.md, "HeartBeat"). Each side's Aloha
// carries in HeartBeat the period, in milliseconds, at which it wants to
// hear from its peer. A side whose peer asked sends a heartbeat - a
// mid-link Aloha with only V, R and N, which every receiver skips, the
// seed's own "DP --Aloha--> IS" - whenever it has sent nothing else for
// that period. A side that asked, of a peer that announced HeartBeat too
// (so it is known to send them), gives the link up after twice its own
// period without a byte. A plain peer that announces nothing is sent no
// heartbeats and is not held to any.

// MinHeartBeat is the shortest period rtcp sends heartbeats at, whatever
// a peer asks for: no peer can make a link carry more than ten a second.
const MinHeartBeat = 100 * time.Millisecond

// maxHeartBeatMS caps a peer's HeartBeat (a day) so that no value overflows.
const maxHeartBeatMS = 24 * 60 * 60 * 1000

// HeartBeatMS returns the Aloha HeartBeat for the keepalive period d: d in
// milliseconds, at least MinHeartBeat; 0 (none) if d <= 0.
func HeartBeatMS(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	d = max(d, MinHeartBeat)
	return int(min((d+time.Millisecond-1)/time.Millisecond, maxHeartBeatMS))
}

func heartBeatPeriod(ms int) time.Duration {
	return max(time.Duration(min(ms, maxHeartBeatMS))*time.Millisecond, MinHeartBeat)
}

// KeepAlive returns what the two Alohas agree on for a link: send, how
// often this side sends a heartbeat when it has nothing else to send (0:
// the peer asked for none), and idle, how long this side waits for a byte
// before it gives the link up (0: it does not, because it asked for no
// heartbeats or the peer did not announce that it sends them). idle is
// for mux.IdleReader, send for mux.Session.SetKeepAlive.
func KeepAlive(ours, theirs *plan5.Aloha) (send, idle time.Duration) {
	if theirs.HeartBeat <= 0 {
		return 0, 0
	}
	send = heartBeatPeriod(theirs.HeartBeat)
	if ours.HeartBeat > 0 {
		idle = 2 * heartBeatPeriod(ours.HeartBeat)
	}
	return send, idle
}

// SetHeartbeat makes the Framer write a mux.KindKeepAlive frame as an
// Aloha with the V, R and N of a, the sender's own Aloha.
func (fr *Framer) SetHeartbeat(a *plan5.Aloha) {
	fr.hb = &plan5.Aloha{V: a.V, R: a.R, N: a.N}
}

func (fr *Framer) heartbeat() *plan5.Aloha {
	if fr.hb == nil {
		return &plan5.Aloha{V: plan5.Version}
	}
	return fr.hb
}
