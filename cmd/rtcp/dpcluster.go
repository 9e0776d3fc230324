package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"rtcp"
	"rtcp/etcdregistry"
)

// clusterFlags are the dp command's flags for joining a cluster of DPs
// that share a registry of names on etcd.
type clusterFlags struct {
	etcd      *string
	advertise *string
	ttl       *time.Duration
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	return &clusterFlags{
		etcd: fs.String("etcd", "", "etcd client `URLs`, comma-separated (http://HOST:2379,...): join the cluster of DPs "+
			"that share them; a client may then reach any DP for any name (needs -advertise)"),
		advertise: fs.String("advertise", "", "`host:port` at which the other DPs of the cluster reach this one "+
			"(its -listen port, on an address they can dial; with TLS, a name its certificate holds)"),
		ttl: fs.Duration("etcd-ttl", etcdregistry.DefaultTTL, "with -etcd: how long the names of a DP that died "+
			"stay registered (whole seconds; etcd's minimum is about 2s)"),
	}
}

func (f *clusterFlags) check(fs *flag.FlagSet) error {
	if *f.etcd == "" {
		if *f.advertise != "" {
			return usageErrorf(fs, "-advertise is for a DP of a cluster: give -etcd too")
		}
		return nil
	}
	if *f.advertise == "" {
		return usageErrorf(fs, "-etcd needs -advertise: the host:port at which the other DPs reach this one")
	}
	host, port, err := net.SplitHostPort(*f.advertise)
	if err != nil || host == "" || port == "" || port == "0" {
		return usageErrorf(fs, "-advertise %q: want host:port that the other DPs can dial, such as 10.0.0.1:9000", *f.advertise)
	}
	if *f.ttl < time.Second {
		return usageErrorf(fs, "-etcd-ttl %v: want at least 1s", *f.ttl)
	}
	return nil
}

// clusterMember is a DP's membership of a cluster: its registry on etcd
// and how it dials the other DPs.
type clusterMember struct {
	reg       *etcdregistry.Registry
	advertise string
	peer      *rtcp.Dialer
}

// join opens the registry on etcd, or returns nil without -etcd. The
// other DPs are dialled as this DP is served: with TLS when serverTLS is
// set (presenting its own certificate, and trusting the CAs it trusts for
// clients, or else the system's), and proving cred when it is set.
func (f *clusterFlags) join(ctx context.Context, serverTLS *tls.Config, cred *rtcp.Credential, log *slog.Logger, stderr io.Writer) (*clusterMember, error) {
	if *f.etcd == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reg, err := etcdregistry.New(ctx, etcdregistry.Config{
		Endpoints: strings.Split(*f.etcd, ","),
		TTL:       *f.ttl,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	peer := &rtcp.Dialer{Credential: cred}
	if serverTLS != nil {
		peer.TLSConfig = &tls.Config{
			Certificates: serverTLS.Certificates,
			RootCAs:      serverTLS.ClientCAs,
			MinVersion:   tls.VersionTLS12,
		}
	}
	fmt.Fprintf(stderr, "rtcp dp: in the cluster on etcd %s as %s\n", *f.etcd, *f.advertise)
	return &clusterMember{reg: reg, advertise: *f.advertise, peer: peer}, nil
}

// configure makes dp a member; before dp serves anything.
func (m *clusterMember) configure(dp *rtcp.DiscoverPoint) {
	if m == nil {
		return
	}
	dp.Registry = m.reg
	dp.Advertise = m.advertise
	dp.Peer = m.peer
}

// leave closes the registry, which removes this DP's names at once; after
// the DP is closed.
func (m *clusterMember) leave() {
	if m != nil {
		m.reg.Close()
	}
}
