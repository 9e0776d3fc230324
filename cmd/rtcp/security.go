package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"rtcp"
)

// tokenEnv is the environment variable that holds a token when
// -token-file is not given. Secrets never go on the command line, where
// ps and shell histories show them.
const tokenEnv = "RTCP_TOKEN"

// security holds the flags of TLS and authentication that dp, expose and
// connect share.
type security struct {
	dp         bool // the DP's flags rather than a peer's
	useTLS     bool
	cert, key  string
	ca         string
	insecure   bool
	tokenFile  string
	configFile string
	getenv     func(string) string // os.Getenv; tests replace it
}

// securityFlags adds the security flags to fs: for the DP (dp true) or
// for a peer of a DP.
func securityFlags(fs *flag.FlagSet, dp bool) *security {
	s := &security{dp: dp, getenv: os.Getenv}
	if dp {
		fs.StringVar(&s.cert, "tls-cert", "", "PEM `file` of the DP's TLS certificate (chain); with -tls-key, servers and clients must speak TLS")
		fs.StringVar(&s.key, "tls-key", "", "PEM `file` of the private key of -tls-cert")
		fs.StringVar(&s.ca, "tls-ca", "", "PEM `file` of CAs: require every server and client to present a certificate they signed (mutual TLS)")
		fs.StringVar(&s.configFile, "config", "", "JSON `file` of keys, owned names, client allow lists and limits of bandwidth and sessions by name and key (docs/security.md); SIGHUP reads it again")
		fs.StringVar(&s.tokenFile, "token-file", "", "`file` holding a token KEY:SECRET that every server and client must prove (default $"+tokenEnv+"); SIGHUP reads it again")
		return s
	}
	fs.BoolVar(&s.useTLS, "tls", false, "speak TLS to the DP, trusting the system's CAs (implied by the other -tls flags)")
	fs.StringVar(&s.ca, "tls-ca", "", "PEM `file` of the CAs to trust for the DP's certificate instead of the system's")
	fs.StringVar(&s.cert, "tls-cert", "", "PEM `file` of a client certificate, for a DP that asks for one (-tls-ca on the DP)")
	fs.StringVar(&s.key, "tls-key", "", "PEM `file` of the private key of -tls-cert")
	fs.BoolVar(&s.insecure, "tls-insecure-skip-verify", false, "speak TLS but accept any certificate from the DP (testing only: anyone on the path can pose as the DP)")
	fs.StringVar(&s.tokenFile, "token-file", "", "`file` holding this side's token KEY:SECRET, for a DP that asks for a key (default $"+tokenEnv+")")
	return s
}

// tlsConfig returns the TLS configuration the flags ask for, or nil.
// Warnings go to log.
func (s *security) tlsConfig(fs *flag.FlagSet, log *slog.Logger) (*tls.Config, error) {
	if (s.cert == "") != (s.key == "") {
		return nil, usageErrorf(fs, "-tls-cert and -tls-key go together")
	}
	var cfg tls.Config
	if s.cert != "" {
		c, err := tls.LoadX509KeyPair(s.cert, s.key)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert %s, -tls-key %s: %w", s.cert, s.key, err)
		}
		cfg.Certificates = []tls.Certificate{c}
		warnIfShared(s.key, "-tls-key", log)
	}
	var pool *x509.CertPool
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca %s: no PEM certificate in the file", s.ca)
		}
	}
	if s.dp {
		if s.cert == "" {
			if s.ca != "" {
				return nil, usageErrorf(fs, "-tls-ca needs -tls-cert and -tls-key: a DP asks for client certificates only over TLS")
			}
			return nil, nil
		}
		if pool != nil {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return &cfg, nil
	}
	if !s.useTLS && s.ca == "" && s.cert == "" && !s.insecure {
		return nil, nil
	}
	cfg.RootCAs = pool
	if s.insecure {
		log.Warn("rtcp " + fs.Name() + ": -tls-insecure-skip-verify: the DP's certificate is NOT checked; anyone on the network path can pose as the DP and read or change every session. Use -tls-ca instead")
		cfg.InsecureSkipVerify = true
	}
	return &cfg, nil
}

// credential returns the token of -token-file, or of $RTCP_TOKEN, or nil.
func (s *security) credential() (*rtcp.Credential, error) {
	if s.tokenFile != "" {
		b, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		c, err := rtcp.ParseCredential(string(b))
		if err != nil {
			return nil, fmt.Errorf("-token-file %s: %w", s.tokenFile, err)
		}
		return c, nil
	}
	if t := s.getenv(tokenEnv); t != "" {
		c, err := rtcp.ParseCredential(t)
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", tokenEnv, err)
		}
		return c, nil
	}
	return nil, nil
}

// peerCredential is credential with a warning for a token file others
// can read.
func (s *security) peerCredential(log *slog.Logger) (*rtcp.Credential, error) {
	if s.tokenFile != "" {
		warnIfShared(s.tokenFile, "-token-file", log)
	}
	return s.credential()
}

// policy returns the DP's policy: the -config file, plus the key of
// -token-file or $RTCP_TOKEN, which every peer must then prove. Nil
// means the DP admits everyone (see warnOpen).
func (s *security) policy(log *slog.Logger) (*rtcp.Policy, error) {
	var pol *rtcp.Policy
	if s.configFile != "" {
		warnIfShared(s.configFile, "-config", log)
		b, err := os.ReadFile(s.configFile)
		if err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		if pol, err = parseConfig(b); err != nil {
			return nil, fmt.Errorf("-config %s: %w", s.configFile, err)
		}
	}
	if s.tokenFile != "" {
		warnIfShared(s.tokenFile, "-token-file", log)
	}
	cred, err := s.credential()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if pol == nil {
			pol = &rtcp.Policy{}
		}
		if pol.Keys == nil {
			pol.Keys = make(map[string][]byte)
		}
		if old, ok := pol.Keys[cred.Key]; ok && !bytes.Equal(old, cred.Secret) {
			return nil, fmt.Errorf("key %q has one secret in -config and another in the token", cred.Key)
		}
		pol.Keys[cred.Key] = cred.Secret
	}
	if pol == nil {
		return nil, nil
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return pol, nil
}

// warnOpen says, once the DP serves, that it admits everyone.
func warnOpen(pol *rtcp.Policy, log *slog.Logger) {
	if pol == nil {
		log.Warn("rtcp dp: no -config, -token-file or $" + tokenEnv + ": every server and client is admitted, and any server may take any free name")
	}
}

// warnIfShared warns when the secret file path is readable by others.
func warnIfShared(path, flagName string, log *slog.Logger) {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("rtcp: a secret file is readable by other users; chmod 600 it", "flag", flagName, "file", path, "mode", fi.Mode().Perm().String())
	}
}

// config is the -config file of rtcp dp.
type config struct {
	// Keys maps a key's name to its secret (at least 16 bytes; use
	// openssl rand -hex 32).
	Keys             map[string]string `json:"keys"`
	AnonymousServers bool              `json:"anonymous_servers"`
	AnonymousClients bool              `json:"anonymous_clients"`
	Names            []nameConfig      `json:"names"`
	// KeyLimits bound the sessions of each key's clients (limitsConfig, dpproxy.go).
	KeyLimits map[string]limitsConfig `json:"key_limits"`
}

type nameConfig struct {
	Name    string       `json:"name"`
	Owners  []string     `json:"owners"`
	Clients []string     `json:"clients"`
	Allow   []string     `json:"allow"` // CIDRs or single addresses
	Limits  limitsConfig `json:"limits"`
}

// parseConfig parses a -config file into a policy. Unknown fields are an
// error: a misspelt "owners" must not leave a name open.
func parseConfig(b []byte) (*rtcp.Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	pol := &rtcp.Policy{
		Keys:             make(map[string][]byte, len(c.Keys)),
		AnonymousServers: c.AnonymousServers,
		AnonymousClients: c.AnonymousClients,
	}
	for k, s := range c.Keys {
		pol.Keys[k] = []byte(s)
	}
	for _, n := range c.Names {
		r := rtcp.NameRule{Name: n.Name, Owners: n.Owners, Clients: n.Clients, Limits: rtcp.Limits(n.Limits)}
		for _, a := range n.Allow {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				ip, err2 := netip.ParseAddr(a)
				if err2 != nil {
					return nil, fmt.Errorf("name %q: allow %q is neither a CIDR nor an address", n.Name, a)
				}
				p = netip.PrefixFrom(ip, ip.BitLen())
			}
			r.Allow = append(r.Allow, p.Masked())
		}
		pol.Names = append(pol.Names, r)
	}
	for k, l := range c.KeyLimits {
		if pol.KeyLimits == nil {
			pol.KeyLimits = make(map[string]rtcp.Limits)
		}
		pol.KeyLimits[k] = rtcp.Limits(l)
	}
	if err := pol.Validate(); err != nil {
		return nil, wrapf(err, "%s", strings.TrimPrefix(err.Error(), "rtcp: policy: "))
	}
	return pol, nil
}
