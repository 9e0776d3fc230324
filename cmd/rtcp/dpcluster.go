package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
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

	// Whoever can write the registry can send sessions anywhere: these
	// protect the way to etcd.
	etcdCA, etcdCert, etcdKey  *string
	etcdUser, etcdPasswordFile *string

	tokenFile *string // the key the DPs prove to each other
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	return &clusterFlags{
		etcd: fs.String("etcd", "", "etcd client `URLs`, comma-separated (https://HOST:2379,...): join the cluster of DPs "+
			"that share them; a client may then reach any DP for any name (needs -advertise). Whoever can write "+
			"this etcd can send sessions where they like: protect it with -etcd-tls-* and -etcd-user"),
		advertise: fs.String("advertise", "", "`host:port` at which the other DPs of the cluster reach this one "+
			"(its -listen port, on an address they can dial; with TLS, a name its certificate holds)"),
		ttl: fs.Duration("etcd-ttl", etcdregistry.DefaultTTL, "with -etcd: how long the names of a DP that died "+
			"stay registered (whole seconds; etcd's minimum is about 2s)"),
		etcdCA: fs.String("etcd-tls-ca", "", "PEM `file` of the CAs to trust for etcd's certificate instead of the "+
			"system's (https:// -etcd URLs)"),
		etcdCert: fs.String("etcd-tls-cert", "", "PEM `file` of a client certificate for an etcd that asks for one "+
			"(etcd --client-cert-auth)"),
		etcdKey: fs.String("etcd-tls-key", "", "PEM `file` of the private key of -etcd-tls-cert"),
		etcdUser: fs.String("etcd-user", "", "etcd `user` to log in as, with -etcd-password-file; give it a role with "+
			"read-write access to the prefix "+etcdregistry.DefaultPrefix+" only"),
		etcdPasswordFile: fs.String("etcd-password-file", "", "`file` holding the password of -etcd-user"),
		tokenFile: fs.String("cluster-token-file", "", "`file` holding the token KEY:SECRET that the DPs of the "+
			"cluster prove to each other: the same on every DP, and given to no server or client. A DP that "+
			"proves it speaks for the clients it carries, so that a name's client keys and allowed networks "+
			"hold across DPs, and a session carried across DPs may be brokered direct (default: the key of "+
			"-token-file, and a carried client is checked as that key, and never brokered direct)"),
	}
}

func (f *clusterFlags) check(fs *flag.FlagSet) error {
	if *f.etcd == "" {
		if *f.advertise != "" {
			return usageErrorf(fs, "-advertise is for a DP of a cluster: give -etcd too")
		}
		for _, name := range []string{"etcd-tls-ca", "etcd-tls-cert", "etcd-tls-key", "etcd-user", "etcd-password-file", "cluster-token-file"} {
			if fs.Lookup(name).Value.String() != "" {
				return usageErrorf(fs, "-%s is for a DP of a cluster: give -etcd too", name)
			}
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
	if (*f.etcdCert == "") != (*f.etcdKey == "") {
		return usageErrorf(fs, "-etcd-tls-cert and -etcd-tls-key go together")
	}
	if (*f.etcdUser == "") != (*f.etcdPasswordFile == "") {
		return usageErrorf(fs, "-etcd-user and -etcd-password-file go together")
	}
	if *f.etcdCA != "" || *f.etcdCert != "" {
		for _, u := range f.endpoints() {
			if strings.HasPrefix(u, "http://") {
				return usageErrorf(fs, "-etcd %s: the etcd client speaks no TLS to an http:// URL; write https:// to use -etcd-tls-*", u)
			}
		}
	}
	return nil
}

func (f *clusterFlags) endpoints() []string {
	var eps []string
	for u := range strings.SplitSeq(*f.etcd, ",") {
		if u = strings.TrimSpace(u); u != "" {
			eps = append(eps, u)
		}
	}
	return eps
}

// etcdConfig is the registry's configuration the flags ask for: TLS to
// etcd for https:// URLs (trusting -etcd-tls-ca, or the system's CAs),
// and a user and password. Warnings go to log.
func (f *clusterFlags) etcdConfig(log *slog.Logger) (etcdregistry.Config, error) {
	cfg := etcdregistry.Config{Endpoints: f.endpoints(), TTL: *f.ttl}
	https := slices.ContainsFunc(cfg.Endpoints, func(u string) bool { return strings.HasPrefix(u, "https://") })
	if https || *f.etcdCA != "" || *f.etcdCert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.etcdCA != "" {
			pem, err := os.ReadFile(*f.etcdCA)
			if err != nil {
				return cfg, fmt.Errorf("-etcd-tls-ca: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("-etcd-tls-ca %s: no PEM certificate in the file", *f.etcdCA)
			}
		}
		if *f.etcdCert != "" {
			c, err := tls.LoadX509KeyPair(*f.etcdCert, *f.etcdKey)
			if err != nil {
				return cfg, fmt.Errorf("-etcd-tls-cert %s, -etcd-tls-key %s: %w", *f.etcdCert, *f.etcdKey, err)
			}
			t.Certificates = []tls.Certificate{c}
			warnIfShared(*f.etcdKey, "-etcd-tls-key", log)
		}
		cfg.TLS = t
	}
	if *f.etcdUser != "" {
		warnIfShared(*f.etcdPasswordFile, "-etcd-password-file", log)
		b, err := os.ReadFile(*f.etcdPasswordFile)
		if err != nil {
			return cfg, fmt.Errorf("-etcd-password-file: %w", err)
		}
		cfg.Username, cfg.Password = *f.etcdUser, strings.TrimRight(string(b), "\r\n")
		if cfg.Password == "" {
			return cfg, fmt.Errorf("-etcd-password-file %s is empty", *f.etcdPasswordFile)
		}
		if cfg.TLS == nil {
			log.Warn("rtcp dp: -etcd-password-file without TLS: the password crosses the network in the clear; use https:// etcd URLs")
		}
	}
	return cfg, nil
}

// clusterMember is a DP's membership of a cluster: its registry on etcd
// and how it dials the other DPs.
type clusterMember struct {
	reg       *etcdregistry.Registry
	advertise string
	peer      *rtcp.Dialer
	policy    *rtcp.Policy // the DP's policy with the cluster's key, or nil: as it is
}

// join opens the registry on etcd, or returns nil without -etcd. The
// other DPs are dialled as this DP is served: with TLS when serverTLS is
// set (presenting its own certificate, and trusting the CAs it trusts for
// clients, or else the system's), and proving the cluster's key, or else
// cred, when it is set. pol is the DP's policy, to which the cluster's
// key is added.
func (f *clusterFlags) join(ctx context.Context, serverTLS *tls.Config, pol *rtcp.Policy, cred *rtcp.Credential, log *slog.Logger) (*clusterMember, error) {
	if *f.etcd == "" {
		return nil, nil
	}
	m := &clusterMember{advertise: *f.advertise, peer: &rtcp.Dialer{Credential: cred}}
	if *f.tokenFile != "" {
		dpCred, err := f.clusterCredential(cred, log)
		if err != nil {
			return nil, err
		}
		m.peer.Credential = dpCred
		if m.policy, err = withClusterKey(pol, dpCred); err != nil {
			return nil, err
		}
	}
	if serverTLS != nil {
		m.peer.TLSConfig = &tls.Config{
			Certificates: serverTLS.Certificates,
			RootCAs:      serverTLS.ClientCAs,
			MinVersion:   tls.VersionTLS12,
		}
	}
	cfg, err := f.etcdConfig(log)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m.reg, err = etcdregistry.New(ctx, cfg); err != nil {
		return nil, err
	}
	ready(log, "rtcp dp: in the cluster", "etcd", *f.etcd, "advertise", *f.advertise)
	return m, nil
}

// clusterCredential reads -cluster-token-file.
func (f *clusterFlags) clusterCredential(cred *rtcp.Credential, log *slog.Logger) (*rtcp.Credential, error) {
	warnIfShared(*f.tokenFile, "-cluster-token-file", log)
	b, err := os.ReadFile(*f.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("-cluster-token-file: %w", err)
	}
	c, err := rtcp.ParseCredential(string(b))
	if err != nil {
		return nil, fmt.Errorf("-cluster-token-file %s: %w", *f.tokenFile, err)
	}
	if cred != nil && c.Key == cred.Key {
		return nil, fmt.Errorf("-cluster-token-file %s: key %q is also the key of -token-file, which servers and clients hold; give the DPs a key of their own", *f.tokenFile, c.Key)
	}
	return c, nil
}

// withClusterKey returns a copy of pol that knows the cluster's key as a
// DP's (rtcp.Policy.DPs), or nil if pol is nil: a DP that admits
// everyone checks no key.
func withClusterKey(pol *rtcp.Policy, c *rtcp.Credential) (*rtcp.Policy, error) {
	if pol == nil {
		return nil, nil
	}
	if old, ok := pol.Keys[c.Key]; ok && !bytes.Equal(old, c.Secret) {
		return nil, fmt.Errorf("key %q has one secret in -config and another in -cluster-token-file", c.Key)
	}
	p := *pol
	p.Keys = maps.Clone(pol.Keys)
	if p.Keys == nil {
		p.Keys = make(map[string][]byte)
	}
	p.Keys[c.Key] = c.Secret
	if !slices.Contains(p.DPs, c.Key) {
		p.DPs = append(slices.Clip(p.DPs), c.Key)
	}
	return &p, p.Validate()
}

// configure makes dp a member; before dp serves anything.
func (m *clusterMember) configure(dp *rtcp.DiscoverPoint) {
	if m == nil {
		return
	}
	dp.Registry = m.reg
	dp.Advertise = m.advertise
	dp.Peer = m.peer
	if m.policy != nil {
		dp.Policy = m.policy
	}
}

// leave closes the registry, which removes this DP's names at once; after
// the DP is closed.
func (m *clusterMember) leave() {
	if m != nil {
		m.reg.Close()
	}
}
