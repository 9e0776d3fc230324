package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// internalUsage starts the usage of a flag that tests and the bench use
// but people do not: -h leaves it out, and it still works.
const internalUsage = "internal: "

// A flagGroup is a heading of a command's -h and the flags under it.
type flagGroup struct {
	heading string
	flags   []string
}

// flagGroups holds, by command, the headings its -h lists its flags
// under; a command not here lists them under "Flags". A flag a command
// defines that no group names is listed under "Other flags", and
// TestHelpGroups fails: a new flag goes into one group here.
var flagGroups = map[string][]flagGroup{
	"dp": {
		{"Core", []string{"listen", "port", "grace", "no-direct"}},
		{"Security", []string{"tls-cert", "tls-key", "tls-ca", "config", "token-file", "proxy-protocol-from"}},
		{"Cluster (several DPs sharing one etcd)", []string{"etcd", "advertise", "etcd-ttl", "etcd-tls-ca", "etcd-tls-cert",
			"etcd-tls-key", "etcd-user", "etcd-password-file", "cluster-token-file"}},
		{"Seed doors (Mihini, Cumulocity, CCCP)", []string{"mihini", "mihini-key", "c8y-listen", "c8y-token-file", "c8y-cert",
			"c8y-key", "c8y-server-key", "c8y-max-keys", "cccp-api", "cccp-devices", "cccp-ports", "cccp-host", "cccp-token-file", "cccp-key"}},
		{"Web doors (browsers reach NAME.DOMAIN)", []string{"http", "https", "domain"}},
		{"Limits and timeouts", []string{"max-conns", "max-conns-per-door", "max-names", "max-links-per-owner",
			"max-sessions-per-server", "max-pending-connects", "max-handshakes-per-source", "max-auth-failures-per-source",
			"handshake-timeout", "keepalive", "stall-timeout", "window-memory", "http-timeout", "http-idle-timeout"}},
		{"Observability", []string{"metrics", "admin", "admin-token-file", "max-name-stats", "log-level", "log-format"}},
	},
}

// printFlags prints the flags of fs that are not internal, in the groups
// flagGroups gives the command fs is for, in the form of
// flag.PrintDefaults.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	listed := make(map[string]bool)
	for _, g := range flagGroups[fs.Name()] {
		var fl []*flag.Flag
		for _, name := range g.flags {
			if f := fs.Lookup(name); f != nil && !hidden(f) {
				fl = append(fl, f)
				listed[name] = true
			}
		}
		printGroup(w, g.heading, fl)
	}
	var rest []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] && !hidden(f) {
			rest = append(rest, f)
		}
	})
	heading := "Flags"
	if len(listed) > 0 {
		heading = "Other flags"
	}
	printGroup(w, heading, rest)
}

// hidden reports whether f is internal.
func hidden(f *flag.Flag) bool { return strings.HasPrefix(f.Usage, internalUsage) }

// printGroup prints the heading and fl as flag.PrintDefaults would, or
// nothing if fl is empty.
func printGroup(w io.Writer, heading string, fl []*flag.Flag) {
	if len(fl) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", heading)
	// A flag set of these flags alone, with their defaults as the
	// command defined them (a flag given before -h has changed its value).
	g := flag.NewFlagSet("", flag.ContinueOnError)
	g.SetOutput(w)
	for _, f := range fl {
		g.Var(f.Value, f.Name, f.Usage)
		g.Lookup(f.Name).DefValue = f.DefValue
	}
	g.PrintDefaults()
}
