package rtcp

import (
	"context"
	"sync"
)

// A Registration says that Owner serves Name through the DP at DP.
type Registration struct {
	Name  string
	Owner string // identifies the server process (its links share it)
	DP    string // the DP holding the server's links ("" for this one)
}

// A Registry records which server owns each name. A DiscoverPoint keeps
// its own links in memory and asks the Registry only who owns a name, so
// that several DPs can share one Registry (on a distributed store) and a
// name stays owned by one server across all of them.
//
// Implementations must be safe for concurrent use.
type Registry interface {
	// Register records r. It fails with ErrNameTaken if another owner
	// holds r.Name; registering again for the same owner succeeds.
	Register(ctx context.Context, r Registration) error
	// Unregister removes r if r.Owner still holds r.Name.
	Unregister(ctx context.Context, r Registration) error
	// Lookup returns who holds name, or ErrNoServer.
	Lookup(ctx context.Context, name string) (Registration, error)
}

// MemoryRegistry is a Registry in one process's memory: the default for a
// single DiscoverPoint. The zero value is empty and ready to use.
type MemoryRegistry struct {
	mu    sync.Mutex
	names map[string]Registration
}

var _ Registry = (*MemoryRegistry)(nil)

func (m *MemoryRegistry) Register(_ context.Context, r Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.names[r.Name]; ok && old.Owner != r.Owner {
		return ErrNameTaken
	}
	if m.names == nil {
		m.names = make(map[string]Registration)
	}
	m.names[r.Name] = r
	return nil
}

func (m *MemoryRegistry) Unregister(_ context.Context, r Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.names[r.Name]; ok && old.Owner == r.Owner {
		delete(m.names, r.Name)
	}
	return nil
}

func (m *MemoryRegistry) Lookup(_ context.Context, name string) (Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.names[name]
	if !ok {
		return Registration{}, ErrNoServer
	}
	return r, nil
}

// Len returns the number of names registered.
func (m *MemoryRegistry) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.names)
}
