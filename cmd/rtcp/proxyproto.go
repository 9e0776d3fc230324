package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"time"

	"rtcp"
)

// proxyProtocolVersion is expose -proxy-protocol's version: 0 (none), 1
// or 2.
func proxyProtocolVersion(fs *flag.FlagSet, s string) (int, error) {
	switch s {
	case "":
		return 0, nil
	case "v1", "1":
		return 1, nil
	case "v2", "2":
		return 2, nil
	}
	return 0, usageErrorf(fs, "-proxy-protocol %q: use v1 (text) or v2 (binary)", s)
}

// dialService returns expose's dial of the service at to, which writes
// a PROXY protocol header of version (if not 0) with the session's
// client address before anything else.
func dialService(to string, version int) func(context.Context, net.Conn) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, c net.Conn) (net.Conn, error) {
		out, err := d.DialContext(ctx, "tcp", to)
		if err != nil || version == 0 {
			return out, err
		}
		out.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := rtcp.WriteProxyHeader(out, version, c); err != nil {
			out.Close()
			return nil, fmt.Errorf("writing the PROXY protocol header: %w", err)
		}
		out.SetWriteDeadline(time.Time{})
		return out, nil
	}
}
