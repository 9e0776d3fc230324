package main

import (
	"fmt"
	"net/netip"
	"strings"
)

const proxyFromUsage = "`CIDR,...`: load balancers in front of the DP that send a PROXY protocol header (v1 or v2) " +
	"with each connection; on connections from them every door (-listen, -port, -http, -https) takes the client's " +
	"address from the header, for -config's allow lists, the bounds per source and the logs, and refuses a connection " +
	"without one (an address is a /32 or /128)"

// prefixList is a flag of networks, comma-separated, repeatable.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("%q is not a network (10.0.0.0/8) or an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		*l = append(*l, p.Masked())
	}
	return nil
}

// limitsConfig is the "limits" of a name, or of a key in "key_limits",
// in the -config file: rtcp.Limits.
type limitsConfig struct {
	BytesPerSecond    int64   `json:"bytes_per_second"`
	SessionsPerSecond float64 `json:"sessions_per_second"`
	MaxSessions       int     `json:"max_sessions"`
}
