// Package etcdregistry is an rtcp.Registry on etcd, for a cluster of
// discover points: every DP of the cluster opens its own Registry on the
// same etcd cluster (and key prefix) and sets its Advertise address, and a
// name then has one owner across all of them, and a client may reach any
// DP for any name (see rtcp.DiscoverPoint.Advertise).
//
// # What it stores
//
// One key per (name, DP) that holds links of the name:
//
//	<Prefix><escaped name>/<escaped DP address>  =  <owner>
//
// each attached to the lease of the DP that wrote it. A DP keeps its lease
// alive while it runs; a DP that dies stops, and etcd deletes its keys when
// the lease's TTL runs out, so its names are free again (or held only by
// the other DPs that have links of the same owner). The value is the owner
// alone so that the ownership check is one etcd comparison over the
// name's whole prefix: Register puts its key only if every key under the
// name holds its owner, or if there is none, in one transaction.
//
// # Who may write it
//
// The registry is what the cluster trusts most: whoever can write the
// prefix can register any name under any address, and every DP then
// carries that name's clients there (a DP's proof of its key is bound to
// the DP it dials, so it does not let that address log in at another DP,
// but the sessions go where the registry says). Give the DPs an etcd user
// of their own, allowed the prefix and nothing else (Config.Username and
// Password), reach etcd over TLS (https:// endpoints and Config.TLS), and
// let no one else write the prefix.
//
// # When etcd goes away
//
// Lookups fail while etcd cannot be reached, so sessions that must cross
// to another DP fail too; sessions on a DP's own links do not need etcd.
// If the lease ran out meanwhile (etcd was gone longer than the TTL, or
// lost its data), the Registry takes a new lease as soon as etcd answers
// again and registers every name this DP still holds.
package etcdregistry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"rtcp"
)

// Defaults of Config.
const (
	DefaultPrefix = "/rtcp/names/"
	DefaultTTL    = 10 * time.Second
)

// Config configures a Registry. Endpoints (or Client) is required; the
// other fields have useful zero values.
type Config struct {
	// Endpoints are the etcd cluster's client URLs, such as
	// "http://127.0.0.1:2379".
	Endpoints []string

	// TLS, Username and Password are passed to the etcd client. TLS is
	// used for https:// endpoints and those without a scheme: the etcd
	// client speaks plain TCP to an http:// endpoint whatever TLS says.
	TLS                *tls.Config
	Username, Password string

	// Client, if set, is used instead of dialling Endpoints; Close leaves
	// it open.
	Client *clientv3.Client

	// Prefix is put before every key. Every DP of one cluster must use
	// the same. Default DefaultPrefix.
	Prefix string

	// TTL is how long the names of a DP that died stay registered.
	// etcd counts it in whole seconds and raises it to its minimum (about
	// 2 s on a default etcd). Default DefaultTTL.
	TTL time.Duration

	// Logger receives the registry's logs (a lease lost and regained).
	// Nil is silent.
	Logger *slog.Logger

	hooks *hooks // tests
}

// hooks let tests wait for the lease to be lost and regained.
type hooks struct {
	leaseLost, recovered func()
}

// Registry is an rtcp.Registry (and rtcp.ClusterRegistry) on etcd for one
// DP. Open it with New and close it after the DP.
type Registry struct {
	cli     *clientv3.Client
	ownCli  bool
	prefix  string
	ttl     int64
	log     *slog.Logger
	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
	closeMu sync.Once

	// opMu lets Register and Unregister run together (read lock) but
	// not while run swaps the lease and registers the held names again
	// (write lock), so no registration is left on a lease that is gone.
	opMu  sync.RWMutex
	mu    sync.Mutex
	lease clientv3.LeaseID
	held  map[string]rtcp.Registration // by key: what this DP registered

	hooks hooks
}

var _ rtcp.ClusterRegistry = (*Registry)(nil)

// New connects to etcd and takes the lease the DP's names will live
// under. ctx bounds that first exchange only.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	r := &Registry{
		cli:    cfg.Client,
		prefix: cfg.Prefix,
		log:    cfg.Logger,
		held:   make(map[string]rtcp.Registration),
		done:   make(chan struct{}),
	}
	if cfg.hooks != nil {
		r.hooks = *cfg.hooks
	}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	r.ttl = max(int64((ttl+time.Second-1)/time.Second), 1)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.cli == nil {
		if len(cfg.Endpoints) == 0 {
			return nil, errors.New("etcdregistry: no etcd endpoints given; name at least one, such as http://127.0.0.1:2379")
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: cfg.Endpoints,
			TLS:       cfg.TLS,
			Username:  cfg.Username,
			Password:  cfg.Password,
			Logger:    zap.NewNop(),
			// Find a restarted etcd within a second or two, not after
			// gRPC's default backoff of up to two minutes.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			})},
			DialKeepAliveTime:    5 * time.Second,
			DialKeepAliveTimeout: 5 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("etcdregistry: etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
		}
		r.cli, r.ownCli = cli, true
	}
	lease, err := r.cli.Grant(ctx, r.ttl)
	if err != nil {
		if r.ownCli {
			r.cli.Close()
		}
		return nil, fmt.Errorf("etcdregistry: cannot take a lease from etcd at %s: %w; is etcd running there?", strings.Join(r.cli.Endpoints(), ","), err)
	}
	r.lease = lease.ID
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run()
	return r, nil
}

// Close stops keeping the lease alive and revokes it, which removes every
// name this DP registered at once, and closes the etcd client if New
// opened it. Close the DP first.
func (r *Registry) Close() error {
	var err error
	r.closeMu.Do(func() {
		r.cancel()
		<-r.done
		r.mu.Lock()
		lease := r.lease
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, rerr := r.cli.Revoke(ctx, lease); rerr != nil {
			err = fmt.Errorf("etcdregistry: revoking the lease: %w (its names expire within the TTL)", rerr)
		}
		cancel()
		if r.ownCli {
			r.cli.Close()
		}
	})
	return err
}

// ErrClosed is returned by a Registry's methods after Close.
var ErrClosed = errors.New("etcdregistry: registry closed")

// opContext returns ctx, also canceled when the Registry is closed, so
// that no call waits on an etcd client that is going away.
func (r *Registry) opContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if r.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// key is the key of name at dp. Escaping keeps '/' out of both parts, so
// a name's keys are exactly those under namePrefix(name).
func (r *Registry) key(name, dp string) string {
	return r.namePrefix(name) + url.PathEscape(dp)
}

func (r *Registry) namePrefix(name string) string {
	return r.prefix + url.PathEscape(name) + "/"
}

// Register records that reg.DP holds links of reg.Name for reg.Owner, in
// one etcd transaction: it fails with rtcp.ErrNameTaken if any DP holds
// the name for another owner, and with an error matching rtcp.ErrBadName,
// before it asks etcd, if reg.Name is not an rtcp.ValidDoorName.
func (r *Registry) Register(ctx context.Context, reg rtcp.Registration) error {
	if err := rtcp.ValidDoorName(reg.Name); err != nil {
		return err
	}
	ctx, cancel, err := r.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	r.opMu.RLock()
	defer r.opMu.RUnlock()
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if err := r.put(ctx, reg, lease); err != nil {
		return err
	}
	r.mu.Lock()
	r.held[r.key(reg.Name, reg.DP)] = reg
	r.mu.Unlock()
	return nil
}

// put writes reg's key under lease if reg.Owner may hold the name.
func (r *Registry) put(ctx context.Context, reg rtcp.Registration, lease clientv3.LeaseID) error {
	pfx, key := r.namePrefix(reg.Name), r.key(reg.Name, reg.DP)
	putOp := clientv3.OpPut(key, reg.Owner, clientv3.WithLease(lease))
	resp, err := r.cli.Txn(ctx).
		// Every key of the name is ours (false when there is none)...
		If(clientv3.Compare(clientv3.Value(pfx), "=", reg.Owner).WithPrefix()).
		Then(putOp).
		Else(clientv3.OpTxn(
			// ... or there is none.
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(pfx), "=", 0).WithPrefix()},
			[]clientv3.Op{putOp},
			[]clientv3.Op{clientv3.OpGet(pfx, clientv3.WithPrefix())},
		)).Commit()
	if err != nil {
		return fmt.Errorf("etcdregistry: registering %q: %w", reg.Name, err)
	}
	if resp.Succeeded {
		return nil
	}
	inner := resp.Responses[0].GetResponseTxn()
	if inner.Succeeded {
		return nil
	}
	for _, kv := range inner.Responses[0].GetResponseRange().Kvs {
		if string(kv.Value) != reg.Owner {
			dp, _ := url.PathUnescape(strings.TrimPrefix(string(kv.Key), pfx))
			return fmt.Errorf("%w (it is registered at DP %s)", rtcp.ErrNameTaken, dp)
		}
	}
	return rtcp.ErrNameTaken
}

// Unregister removes reg.DP's key of reg.Name if reg.Owner holds it.
func (r *Registry) Unregister(ctx context.Context, reg rtcp.Registration) error {
	ctx, cancel, err := r.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	r.opMu.RLock()
	defer r.opMu.RUnlock()
	key := r.key(reg.Name, reg.DP)
	r.mu.Lock()
	delete(r.held, key)
	r.mu.Unlock()
	_, err = r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", reg.Owner)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcdregistry: unregistering %q: %w (it expires with this DP's lease)", reg.Name, err)
	}
	return nil
}

// Lookup returns one holder of name (the first by DP address), or
// rtcp.ErrNoServer.
func (r *Registry) Lookup(ctx context.Context, name string) (rtcp.Registration, error) {
	rs, err := r.Holders(ctx, name)
	if err != nil {
		return rtcp.Registration{}, err
	}
	return rs[0], nil
}

// Holders returns a Registration for each DP that holds name, sorted by
// DP address, or rtcp.ErrNoServer.
func (r *Registry) Holders(ctx context.Context, name string) ([]rtcp.Registration, error) {
	ctx, cancel, err := r.opContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	pfx := r.namePrefix(name)
	resp, err := r.cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdregistry: looking up %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, rtcp.ErrNoServer
	}
	rs := make([]rtcp.Registration, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		dp, err := url.PathUnescape(strings.TrimPrefix(string(kv.Key), pfx))
		if err != nil {
			continue // not a key of ours
		}
		rs = append(rs, rtcp.Registration{Name: name, Owner: string(kv.Value), DP: dp})
	}
	if len(rs) == 0 {
		return nil, rtcp.ErrNoServer
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].DP < rs[j].DP })
	return rs, nil
}

// run keeps the lease alive until Close; when the lease is lost, it takes
// a new one and registers the held names again.
func (r *Registry) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		lease := r.lease
		r.mu.Unlock()
		if ch, err := r.cli.KeepAlive(r.ctx, lease); err == nil {
			for range ch {
				// The client sends a keepalive every TTL/3; the channel
				// closes when the lease is gone or has not been renewed
				// within its TTL.
			}
		}
		if r.ctx.Err() != nil {
			return
		}
		r.log.Warn("etcdregistry: lease lost; taking a new one and registering this DP's names again", "lease", int64(lease))
		if r.hooks.leaseLost != nil {
			r.hooks.leaseLost()
		}
		if !r.renew(lease) {
			return
		}
		if r.hooks.recovered != nil {
			r.hooks.recovered()
		}
	}
}

// renew takes a new lease, retrying until etcd answers, and registers the
// held names under it. It returns false when Close ends it.
func (r *Registry) renew(old clientv3.LeaseID) bool {
	wait := 100 * time.Millisecond
	var lease clientv3.LeaseID
	for {
		ctx, cancel := context.WithTimeout(r.ctx, time.Duration(r.ttl)*time.Second)
		resp, err := r.cli.Grant(ctx, r.ttl)
		cancel()
		if err == nil {
			lease = resp.ID
			break
		}
		if r.ctx.Err() != nil {
			return false
		}
		r.log.Warn("etcdregistry: cannot take a new lease; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return false
		}
		wait = min(2*wait, 5*time.Second)
	}
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	r.lease = lease
	held := make([]rtcp.Registration, 0, len(r.held))
	for _, reg := range r.held {
		held = append(held, reg)
	}
	r.mu.Unlock()
	for _, reg := range held {
		wait := 100 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(r.ctx, time.Duration(r.ttl)*time.Second)
			err := r.put(ctx, reg, lease)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, rtcp.ErrNameTaken) {
				r.log.Error("etcdregistry: while the lease was lost, another server took a name this DP serves; clients at other DPs reach that server", "name", reg.Name, "owner", reg.Owner, "err", err)
				r.mu.Lock()
				delete(r.held, r.key(reg.Name, reg.DP))
				r.mu.Unlock()
				break
			}
			r.log.Warn("etcdregistry: registering a name again failed; retrying", "name", reg.Name, "err", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return false
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
	// Keys still on the old lease (if etcd kept it) are names given up
	// meanwhile; revoking it removes them.
	ctx, cancel := context.WithTimeout(r.ctx, time.Duration(r.ttl)*time.Second)
	r.cli.Revoke(ctx, old)
	cancel()
	r.log.Info("etcdregistry: lease regained", "lease", int64(lease), "names", len(held))
	return true
}
