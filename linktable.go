package rtcp

import (
	"fmt"
	"reflect"
	"sync"
	"time"
)

// linkTable is the DP's one table of server links: for each name its
// owner and the links in its rotation, for each link what the DP knows of
// it, and for each owner how many links it has. Every Link, built in or
// added with AddLink, goes through it.
//
// Lock order: a name's registration lock (lockName) is taken before the
// table's mu, and both before the DP's mu; the table's mu is never held
// while calling out (into a Link, the Registry, the Policy or a log).
// The counts by name (nameStats, status.go) have a leaf lock, taken
// under any of these.
type linkTable struct {
	mu     sync.Mutex           // guards the fields below and every linkEntry's draining
	names  map[string]*server   // the links in each name's rotation
	links  map[Link]*linkEntry  // every link in the table, in rotation or not
	owners map[string]int       // links by owner, for MaxLinksPerOwner
	locks  map[string]*nameLock // registrations in progress, by name
	stats  *nameStats           // the DP's counts by name: a name's links hold its counts
}

// server is one name: the owner the registry gave it to, and that
// owner's links in rotation.
type server struct {
	owner string
	links []*linkEntry
	next  int // round-robin cursor
}

// linkEntry is one link of a server.
type linkEntry struct {
	link Link
	reg  Registration
	who  principal    // the server's principal, if policed
	end  func() error // closes the link, if policed
	// policed: a server link that dialled in, which the policy in force
	// checks at each open. AddLink's links are the program's own.
	policed bool
	// draining: the link refused an open because its server is closing.
	// It is out of the rotation and ends with its last session.
	draining bool
	// door: added by AddLinkAs, for a door that bounds its own links:
	// not counted toward MaxLinksPerOwner.
	door bool
	// direct: the server takes part in direct sessions (its Aloha's
	// Direct) and the DP brokers them: an open for a client that asked
	// carries the client's address and a secret (direct.go).
	direct bool
	// For Status (status.go): the transport, the server's address, when
	// the link joined the table, and the name's counts it holds.
	transport, remote string
	since             time.Time
	counts            *nameCount
}

// nameLock serializes the registry calls of one name at this DP.
type nameLock struct {
	mu   sync.Mutex
	refs int // guarded by the table's mu
}

func (t *linkTable) init(stats *nameStats) {
	t.stats = stats
	t.names = make(map[string]*server)
	t.links = make(map[Link]*linkEntry)
	t.owners = make(map[string]int)
	t.locks = make(map[string]*nameLock)
}

// lockName serializes the registry calls of one name at this DP: a link
// that registers the name and joins the table does so entirely before or
// after another link's removal decides the name's last link is gone and
// unregisters it, so a link coming back at that moment is never left
// without its registry entry (which would hide it from the other DPs, and
// let another owner take the name).
func (t *linkTable) lockName(name string) (unlock func()) {
	t.mu.Lock()
	nl := t.locks[name]
	if nl == nil {
		nl = new(nameLock)
		t.locks[name] = nl
	}
	nl.refs++
	t.mu.Unlock()
	nl.mu.Lock()
	return func() {
		nl.mu.Unlock()
		t.mu.Lock()
		if nl.refs--; nl.refs == 0 {
			delete(t.locks, name)
		}
		t.mu.Unlock()
	}
}

// limits are the bounds add enforces.
type linkLimits struct{ maxNames, maxLinksPerOwner int }

// check reports whether one more link of reg fits: a new name within
// MaxNames, and its owner's links within MaxLinksPerOwner (unless it is
// a door's).
func (t *linkTable) check(reg Registration, lim linkLimits, door bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkLocked(reg, lim, door)
}

func (t *linkTable) checkLocked(reg Registration, lim linkLimits, door bool) error {
	if t.names[reg.Name] == nil && len(t.names) >= lim.maxNames {
		return &limitError{refusedMaxNames, fmt.Sprintf(
			"rtcp: this DP already serves %d names, its limit (MaxNames); register %q at another DP", len(t.names), reg.Name)}
	}
	if n := t.owners[reg.Owner]; !door && n >= lim.maxLinksPerOwner {
		return &limitError{refusedMaxLinks, fmt.Sprintf(
			"rtcp: server %q already has %d links to this DP, the limit for one server (MaxLinksPerOwner); use a smaller PoolSize", reg.Name, n)}
	}
	return nil
}

// add puts e in the table and in the rotation of its name, or fails with
// a bound. The registry gave the name to e's owner: links of any other
// owner leave the rotation (they stay in the table until removed). held
// reports, on failure, whether the owner still has a link of the name in
// the table.
func (t *linkTable) add(e *linkEntry, lim linkLimits) (held bool, err error) {
	if e.link == nil {
		return false, fmt.Errorf("rtcp: a nil Link for %q", e.reg.Name)
	}
	if !reflect.ValueOf(e.link).Comparable() {
		return false, fmt.Errorf("rtcp: a Link must be comparable, as a map key is (a pointer, say); %T is not", e.link)
	}
	describeLink(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	srv := t.names[e.reg.Name]
	if old := t.links[e.link]; old != nil {
		return srv != nil && srv.owner == e.reg.Owner && t.servesLocked(srv, e.reg.Name),
			fmt.Errorf("rtcp: this Link already serves %q here; a Link serves one name", old.reg.Name)
	}
	if err := t.checkLocked(e.reg, lim, e.door); err != nil {
		return srv != nil && srv.owner == e.reg.Owner && t.servesLocked(srv, e.reg.Name), err
	}
	if srv == nil || srv.owner != e.reg.Owner {
		srv = &server{owner: e.reg.Owner}
		t.names[e.reg.Name] = srv
	}
	srv.links = append(srv.links, e)
	e.since, e.counts = time.Now(), t.stats.hold(e.reg.Name)
	t.links[e.link] = e
	t.owners[e.reg.Owner]++
	return false, nil
}

// remove takes l out of the table. It reports whether that left the name
// of reg with no link of its owner here: then the name is free.
func (t *linkTable) remove(reg Registration, l Link) (last bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.links[l]
	if e == nil {
		return false
	}
	t.stats.release(e.counts)
	delete(t.links, l)
	if t.owners[reg.Owner]--; t.owners[reg.Owner] <= 0 {
		delete(t.owners, reg.Owner)
	}
	srv := t.names[reg.Name]
	if srv == nil || srv.owner != reg.Owner {
		return false
	}
	srv.links = deleteEntry(srv.links, l)
	if t.servesLocked(srv, reg.Name) {
		return false
	}
	delete(t.names, reg.Name)
	return true
}

// servesLocked reports whether srv still has a link of its name in the
// table: in rotation, or draining.
func (t *linkTable) servesLocked(srv *server, name string) bool {
	if len(srv.links) > 0 {
		return true
	}
	for _, e := range t.links {
		if e.draining && e.reg.Name == name && e.reg.Owner == srv.owner {
			return true
		}
	}
	return false
}

func deleteEntry(es []*linkEntry, l Link) []*linkEntry {
	for i, e := range es {
		if e.link == l {
			return append(es[:i], es[i+1:]...)
		}
	}
	return es
}

// pick returns the next link of the name in rotation, round robin,
// skipping those in skip; found is false if nobody serves the name here.
func (t *linkTable) pick(name string, skip map[Link]bool) (e *linkEntry, found bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	srv := t.names[name]
	if srv == nil {
		return nil, false
	}
	for range srv.links {
		e := srv.links[srv.next%len(srv.links)]
		srv.next++
		if !skip[e.link] {
			return e, true
		}
	}
	return nil, true
}

// drain takes l out of its name's rotation: its server refused an open
// because it is closing. The link stays in the table, and its name held,
// until the link ends with its last session.
func (t *linkTable) drain(l Link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.links[l]
	if e == nil || e.draining {
		return
	}
	e.draining = true
	if srv := t.names[e.reg.Name]; srv != nil && srv.owner == e.reg.Owner {
		srv.links = deleteEntry(srv.links, l)
	}
}

// rotation returns the name's owner and its links in rotation.
func (t *linkTable) rotation(name string) (owner string, es []*linkEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	srv := t.names[name]
	if srv == nil {
		return "", nil
	}
	return srv.owner, append([]*linkEntry(nil), srv.links...)
}

// forget drops the name from the table if owner still holds it: its
// links stay in the table, out of any rotation, until removed.
func (t *linkTable) forget(name, owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if srv := t.names[name]; srv != nil && srv.owner == owner {
		delete(t.names, name)
	}
}

// entries returns every link in the table.
func (t *linkTable) entries() []*linkEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	es := make([]*linkEntry, 0, len(t.links))
	for _, e := range t.links {
		es = append(es, e)
	}
	return es
}

// counts returns the names served and the links in the table.
func (t *linkTable) counts() (names, links int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.names), len(t.links)
}
