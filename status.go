package rtcp

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Status is a snapshot of a DiscoverPoint for its operator: its Stats,
// and each name with its owner, its links and its counts. AdminHandler
// serves it as JSON and as a page; docs/operating.md documents the JSON.
type Status struct {
	Stats

	Time      time.Time `json:"time"`      // when the snapshot was taken
	Started   time.Time `json:"started"`   // when the DP was first used
	Accepting bool      `json:"accepting"` // false once Close or Shutdown has begun

	// Names are the names served here (with a link in the DP's table)
	// and those that are not but whose counts are still kept, sorted.
	Names []NameStatus `json:"names"`

	// Other sums the counts of every name not counted on its own: past
	// MaxNameStats, not served here (a client that asks for a name
	// nobody serves), or counted on its own once and since forgotten to
	// make room for another.
	Other NameCounts `json:"other"`

	// MaxNameStats is the most names counted on their own (the DP's
	// MaxNameStats, its default filled in; 0 if none are).
	MaxNameStats int `json:"max_name_stats"`
}

// NameStatus is one name at a DiscoverPoint.
type NameStatus struct {
	Name string `json:"name"`
	// Owner is who holds the name: "key:" and the Policy's key of its
	// server, or the owner an anonymous server gave. Empty if no link
	// holds the name now.
	Owner string `json:"owner"`
	// Links are the name's links in the DP's table, oldest first:
	// those of its owner, and those of a former owner still open.
	Links []LinkStatus `json:"links"`
	// Counted: the name's counts below are its own. False: they are
	// summed in Status.Other, and those below are zero (but Sessions).
	Counted bool `json:"counted"`
	NameCounts
}

// NameCounts are the counts of one name (or of the names summed in
// Status.Other).
type NameCounts struct {
	Sessions      int    `json:"sessions"`        // sessions being opened or relayed now
	SessionsTotal uint64 `json:"sessions_total"`  // sessions relayed
	BytesToServer uint64 `json:"bytes_to_server"` // bytes relayed from clients to the server
	BytesToClient uint64 `json:"bytes_to_client"` // bytes relayed from the server to clients
	// Refused counts the clients and servers of the name refused, by
	// reason (a key of RefusalReasons); only reasons that happened.
	Refused map[string]uint64 `json:"refused"`
}

// LinkStatus is one link of a name.
type LinkStatus struct {
	// Transport is the link's: "json", "yamux" or "tcp" for a server
	// that dialled in, else the Go type of the Link that a door or the
	// program added (AddLink, AddLinkAs), such as "*mihini.dpLink".
	Transport string `json:"transport"`
	// Remote is the server's network address, if the DP knows it.
	Remote     string    `json:"remote"`
	Owner      string    `json:"owner"`
	Since      time.Time `json:"since"`       // when the link joined the table
	AgeSeconds float64   `json:"age_seconds"` // how long before Status.Time
	// Draining: the link's server is closing; it takes no new sessions
	// and ends with its last one.
	Draining bool `json:"draining"`
}

// defaultMaxNameStats is MaxNameStats's default.
const defaultMaxNameStats = 1000

// otherName is the name under which the names not counted on their own
// are summed (dpmetrics labels them name="other"): a name spelt so is
// itself never counted on its own, so that no two sums share it.
const otherName = "other"

// nameStats counts sessions, bytes and refusals by name, for at most max
// names; the rest are summed in other. A name gets its own counts when a
// link of it joins the DP's table and there is room, keeps them while
// it has a link or a session relayed, and after that until its room is
// needed by a new name: its counts go to other then.
type nameStats struct {
	// mu guards names, every nameCount's refs and refused, and other's
	// refused. A leaf: nothing else is locked or called under it.
	mu    sync.Mutex
	max   int
	names map[string]*nameCount
	other nameCount
}

// nameCount is the counts of one name, or of other.
type nameCount struct {
	refs          int // links in the table and sessions being relayed
	sessionsTotal atomic.Uint64
	toServer      atomic.Uint64
	toClient      atomic.Uint64
	refused       [numRefusals]uint64
}

func (s *nameStats) init(max int) {
	switch {
	case max == 0:
		max = defaultMaxNameStats
	case max < 0:
		max = 0
	}
	s.max = max
	s.names = make(map[string]*nameCount)
}

// hold returns name's counts for a link that joined the table, giving
// the name counts of its own if there is room: release them when the
// link leaves the table. Nil means the name is summed in other.
func (s *nameStats) hold(name string) *nameCount {
	if name == otherName {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.names[name]
	if c == nil {
		if len(s.names) >= s.max && !s.evictLocked() {
			return nil
		}
		c = new(nameCount)
		s.names[name] = c
	}
	c.refs++
	return c
}

// evictLocked makes room for a name: it sums the counts of a name that
// has neither link nor session in other, and forgets it. It reports
// whether there was one.
func (s *nameStats) evictLocked() bool {
	for name, c := range s.names {
		if c.refs > 0 {
			continue
		}
		s.other.sessionsTotal.Add(c.sessionsTotal.Load())
		s.other.toServer.Add(c.toServer.Load())
		s.other.toClient.Add(c.toClient.Load())
		for i, n := range c.refused {
			s.other.refused[i] += n
		}
		delete(s.names, name)
		return true
	}
	return false
}

// relay returns the counts to add a session of name to, while it is
// relayed: call release when it ends.
func (s *nameStats) relay(name string) *nameCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.names[name]
	if c == nil {
		return &s.other
	}
	c.refs++
	return c
}

// release lets go of c, from hold or relay.
func (s *nameStats) release(c *nameCount) {
	if c == nil || c == &s.other {
		return
	}
	s.mu.Lock()
	c.refs--
	s.mu.Unlock()
}

// refused counts a refusal of a client or server of name.
func (s *nameStats) refused(name string, r refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.names[name]
	if c == nil {
		c = &s.other
	}
	c.refused[r]++
}

// snapshot returns the counts of each name counted on its own, and of
// other; sessions are filled in by the caller.
func (s *nameStats) snapshot() (names map[string]NameCounts, other NameCounts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names = make(map[string]NameCounts, len(s.names))
	for name, c := range s.names {
		names[name] = c.counts()
	}
	return names, s.other.counts()
}

// counts returns c's counts, under the stats' mu.
func (c *nameCount) counts() NameCounts {
	nc := NameCounts{
		SessionsTotal: c.sessionsTotal.Load(),
		BytesToServer: c.toServer.Load(),
		BytesToClient: c.toClient.Load(),
		Refused:       make(map[string]uint64),
	}
	for i, n := range c.refused {
		if n > 0 {
			nc.Refused[RefusalReasons[i]] = n
		}
	}
	return nc
}

// refusedName counts a refusal of a client or server of name: in the
// DP's Stats, and in the name's counts (unless name is "": a refusal
// before the peer named anything).
func (dp *DiscoverPoint) refusedName(r refusal, name string) {
	dp.refused(r)
	if name != "" {
		dp.counts.names.refused(name, r)
	}
}

// Status returns a snapshot of the DP for its operator. It takes the
// DP's locks one at a time, never two together, so its parts may be a
// moment apart. Its cost grows with the names: some 25 ms for 10000
// names on a busy 2-core machine (BenchmarkStatus).
func (dp *DiscoverPoint) Status() Status {
	dp.init()
	st := Status{Stats: dp.Stats(), Started: dp.counts.started, MaxNameStats: dp.counts.names.max}
	dp.mu.Lock()
	st.Accepting = !dp.shutdown
	sessions := make(map[string]int, len(dp.counts.perServer))
	for name, n := range dp.counts.perServer {
		sessions[name] = n
	}
	dp.mu.Unlock()
	links := dp.links.status()
	counted, other := dp.counts.names.snapshot()
	st.Time = time.Now()

	byName := make(map[string]*NameStatus)
	get := func(name string) *NameStatus {
		ns := byName[name]
		if ns == nil {
			ns = &NameStatus{Name: name, Links: []LinkStatus{}}
			if c, ok := counted[name]; ok {
				ns.Counted, ns.NameCounts = true, c
			} else {
				ns.Refused = map[string]uint64{}
			}
			byName[name] = ns
		}
		return ns
	}
	for _, l := range links {
		ns := get(l.name)
		if l.holds {
			ns.Owner = l.Owner
		}
		l.AgeSeconds = st.Time.Sub(l.Since).Seconds()
		ns.Links = append(ns.Links, l.LinkStatus)
	}
	for name := range counted {
		get(name)
	}
	for name, n := range sessions {
		if ns := byName[name]; ns != nil {
			ns.Sessions = n
		}
		if _, ok := counted[name]; !ok {
			other.Sessions += n
		}
	}
	st.Other = other
	st.Names = make([]NameStatus, 0, len(byName))
	for _, ns := range byName {
		slices.SortFunc(ns.Links, func(a, b LinkStatus) int { return a.Since.Compare(b.Since) })
		st.Names = append(st.Names, *ns)
	}
	slices.SortFunc(st.Names, func(a, b NameStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}

// linkStatus is a link of the table, for Status.
type linkStatus struct {
	LinkStatus
	name  string
	holds bool // its owner holds the name
}

// status returns every link of the table.
func (t *linkTable) status() []linkStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	ls := make([]linkStatus, 0, len(t.links))
	for _, e := range t.links {
		srv := t.names[e.reg.Name]
		ls = append(ls, linkStatus{
			LinkStatus: LinkStatus{Transport: e.transport, Remote: e.remote, Owner: e.reg.Owner,
				Since: e.since, Draining: e.draining},
			name:  e.reg.Name,
			holds: srv != nil && srv.owner == e.reg.Owner,
		})
	}
	return ls
}

// describeLink fills in what Status says of a link that a door or the
// program added: its Go type, and its peer's address if it has one.
func describeLink(e *linkEntry) {
	if e.transport == "" {
		e.transport = fmt.Sprintf("%T", e.link)
	}
	if ra, ok := e.link.(interface{ RemoteAddr() net.Addr }); ok && e.remote == "" {
		if a := ra.RemoteAddr(); a != nil {
			e.remote = a.String()
		}
	}
}

// transportName is what Status calls a server link's transport, from its
// Aloha's ("" is the plain protocol).
func transportName(t string) string {
	if t == "" {
		return "json"
	}
	return t
}
