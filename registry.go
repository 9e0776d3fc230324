package rtcp

import (
	"context"
	"slices"
	"sync"
)

// A Registration says that Owner serves Name through the DP at DP.
type Registration struct {
	Name  string
	Owner string // identifies the server process (its links share it)
	DP    string // the DP holding the server's links: its Advertise address
}

// A Registry records which server owns each name. A DiscoverPoint keeps
// its own links in memory and asks the Registry only who owns a name, so
// that several DPs can share one Registry (on a distributed store) and a
// name stays owned by one server across all of them.
//
// Implementations must be safe for concurrent use.
type Registry interface {
	// Register records that the DP r.DP holds links of r.Name for
	// r.Owner. It fails with ErrNameTaken if another owner holds r.Name
	// at any DP; registering again for the same owner succeeds, at the
	// same DP (a link coming back) or another (a server with links on
	// several DPs).
	Register(ctx context.Context, r Registration) error
	// Unregister removes r.DP's entry for r.Name if r.Owner still holds
	// it; the name stays held while another DP's entry remains.
	Unregister(ctx context.Context, r Registration) error
	// Lookup returns who holds name, or ErrNoServer.
	Lookup(ctx context.Context, name string) (Registration, error)
}

// MemoryRegistry is a Registry in one process's memory: the default for a
// single DiscoverPoint. Several DiscoverPoints of one process may share it
// as a cluster (each with its own Advertise): it keeps one entry per
// (name, DP), all of one owner. The zero value is empty and ready to use.
type MemoryRegistry struct {
	mu    sync.Mutex
	names map[string]*memEntry
}

// memEntry is one name: its owner and the DPs that hold it, in the order
// they registered.
type memEntry struct {
	owner string
	dps   []string
}

var _ ClusterRegistry = (*MemoryRegistry)(nil)

func (m *MemoryRegistry) Register(_ context.Context, r Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.names[r.Name]
	if e != nil && e.owner != r.Owner {
		return ErrNameTaken
	}
	if e == nil {
		if m.names == nil {
			m.names = make(map[string]*memEntry)
		}
		e = &memEntry{owner: r.Owner}
		m.names[r.Name] = e
	}
	if !slices.Contains(e.dps, r.DP) {
		e.dps = append(e.dps, r.DP)
	}
	return nil
}

func (m *MemoryRegistry) Unregister(_ context.Context, r Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.names[r.Name]
	if e == nil || e.owner != r.Owner {
		return nil
	}
	e.dps = slices.DeleteFunc(e.dps, func(dp string) bool { return dp == r.DP })
	if len(e.dps) == 0 {
		delete(m.names, r.Name)
	}
	return nil
}

func (m *MemoryRegistry) Lookup(_ context.Context, name string) (Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.names[name]
	if e == nil {
		return Registration{}, ErrNoServer
	}
	return Registration{Name: name, Owner: e.owner, DP: e.dps[0]}, nil
}

// Holders returns a Registration for each DP that holds name.
func (m *MemoryRegistry) Holders(_ context.Context, name string) ([]Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.names[name]
	if e == nil {
		return nil, ErrNoServer
	}
	rs := make([]Registration, len(e.dps))
	for i, dp := range e.dps {
		rs[i] = Registration{Name: name, Owner: e.owner, DP: dp}
	}
	return rs, nil
}

// Len returns the number of names registered.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.names)
}
