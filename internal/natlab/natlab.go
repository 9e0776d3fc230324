// Package natlab builds small networks of Linux network namespaces for
// tests: a public network, and hosts on it either directly or each behind
// its own NAT made with nftables. Everything it builds is the test's own and
// is torn down when the test ends (t.Cleanup), even when it fails.
//
// The shape, for hosts 1 and 2 behind NATs and host 3 public:
//
//	      public namespace (router, 10.0.0.1 on lo)
//	10.0.1.1/24     10.0.2.1/24     10.0.3.1/24
//	     |               |               |
//	10.0.1.2 wan    10.0.2.2 wan    10.0.3.2 host 3
//	  NAT 1           NAT 2
//	192.168.1.1     192.168.2.1
//	     |               |
//	192.168.1.2     192.168.2.2
//	  host 1          host 2
//
// These addresses live only inside the namespaces. Each NAT drops what
// comes in from the public side unasked (ct state new), as home routers do,
// rather than answering with a reset.
//
// Go code runs in a namespace through NS.Do: on a goroutine locked to an
// OS thread that joined the namespace once with setns(2), one of a few
// that each namespace keeps until the test ends. A socket belongs to
// the namespace it was created in for its whole life, so a listener or a
// connection made inside Do is used from any goroutine afterwards. That
// keeps a test in one process, under the race detector and goleak, with
// nothing to re-exec. Processes run in a namespace through NS.Command
// (ip netns exec).
package natlab

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// NAT is how a host reaches the public network.
type NAT int

const (
	// Public puts the host on the public network, with no NAT.
	Public NAT = iota
	// EndpointIndependent puts the host behind a masquerade that keeps the
	// source port where it can, so a local port maps to the same public
	// port toward every destination (what hole punching needs).
	EndpointIndependent
	// RandomPorts puts the host behind a masquerade with fully-random
	// ports: each new destination sees a different public port, so the
	// port a rendezvous observed is useless to anyone else.
	RandomPorts
)

func (n NAT) String() string {
	switch n {
	case Public:
		return "public"
	case EndpointIndependent:
		return "endpoint-independent NAT"
	case RandomPorts:
		return "random-port NAT"
	}
	return "NAT(" + strconv.Itoa(int(n)) + ")"
}

// RouterAddr is the public namespace's own address, reachable from every
// host: a rendezvous listens there.
var RouterAddr = netip.MustParseAddr("10.0.0.1")

// namePrefix starts the name of every namespace natlab makes; the process
// id follows, so that New can remove what a killed test left behind.
const namePrefix = "rtcpnat"

// A Lab is a public network and the hosts on it.
type Lab struct {
	t      testing.TB
	prefix string
	router *NS
	hosts  int // hosts added so far; only the test's goroutine adds them
}

// An NS is a named network namespace, made by a Lab.
type NS struct {
	Name string

	mu   sync.Mutex // guards pool
	pool nsPool     // the threads that run Do's work in the namespace
}

// A Host is a namespace on the public network, directly or behind a NAT.
type Host struct {
	*NS
	// NAT is the NAT's namespace, nil for a public host.
	NAT *NS
	// Kind is how the host reaches the public network.
	Kind NAT
	// Addr is the host's own address (private behind a NAT).
	Addr netip.Addr
	// PublicAddr is the address the public network sees it at: the NAT's
	// public side, or Addr for a public host.
	PublicAddr netip.Addr
}

// New builds the public network, or skips the test when it cannot: it needs
// root, ip (iproute2) and nft (nftables), and a kernel that lets it make
// network namespaces.
func New(t testing.TB) *Lab {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("natlab: network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("natlab: making network namespaces needs root; run the test as root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("natlab: no %s command (install iproute2 and nftables): %v", tool, err)
		}
	}
	removeStale(t)
	l := &Lab{t: t, prefix: fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), rand.Text()[:6])}
	name := l.prefix + "-pub"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("natlab: cannot make a network namespace here: %v: %s", err, bytes.TrimSpace(out))
	}
	l.router = &NS{Name: name}
	t.Cleanup(func() { l.del(l.router) })
	l.ip("-n", name, "link", "set", "dev", "lo", "up")
	l.ip("-n", name, "addr", "add", RouterAddr.String()+"/32", "dev", "lo")
	l.sysctl(l.router, "net/ipv4/ip_forward", "1")
	return l
}

// Router is the public namespace, which routes between the hosts and owns
// RouterAddr.
func (l *Lab) Router() *NS { return l.router }

// AddHost adds a host that reaches the public network as nat says.
func (l *Lab) AddHost(nat NAT) *Host {
	l.t.Helper()
	l.hosts++
	i := l.hosts
	if i > 250 {
		l.t.Fatal("natlab: at most 250 hosts in a lab")
	}
	wanNet := fmt.Sprintf("10.0.%d.", i)
	h := &Host{Kind: nat}

	// The node on the public network: the NAT, or the host itself.
	role := fmt.Sprintf("h%d", i)
	if nat != Public {
		role = fmt.Sprintf("nat%d", i)
	}
	node := l.newNS(role)
	pubIf := fmt.Sprintf("h%d", i)
	l.ip("link", "add", "name", "wan", "netns", node.Name, "type", "veth",
		"peer", "name", pubIf, "netns", l.router.Name)
	l.ip("-n", l.router.Name, "addr", "add", wanNet+"1/24", "dev", pubIf)
	l.ip("-n", l.router.Name, "link", "set", "dev", pubIf, "up")
	l.ip("-n", node.Name, "addr", "add", wanNet+"2/24", "dev", "wan")
	l.ip("-n", node.Name, "link", "set", "dev", "wan", "up")
	l.ip("-n", node.Name, "route", "add", "default", "via", wanNet+"1")
	h.PublicAddr = netip.MustParseAddr(wanNet + "2")

	if nat == Public {
		h.NS, h.Addr = node, h.PublicAddr
		return h
	}
	h.NAT = node
	lanNet := fmt.Sprintf("192.168.%d.", i)
	h.NS = l.newNS(fmt.Sprintf("h%d", i))
	l.ip("link", "add", "name", "lan", "netns", h.NAT.Name, "type", "veth",
		"peer", "name", "eth0", "netns", h.NS.Name)
	l.ip("-n", h.NAT.Name, "addr", "add", lanNet+"1/24", "dev", "lan")
	l.ip("-n", h.NAT.Name, "link", "set", "dev", "lan", "up")
	l.ip("-n", h.NS.Name, "addr", "add", lanNet+"2/24", "dev", "eth0")
	l.ip("-n", h.NS.Name, "link", "set", "dev", "eth0", "up")
	l.ip("-n", h.NS.Name, "route", "add", "default", "via", lanNet+"1")
	h.Addr = netip.MustParseAddr(lanNet + "2")
	l.sysctl(h.NAT, "net/ipv4/ip_forward", "1")

	masq := "masquerade"
	if nat == RandomPorts {
		masq = "masquerade fully-random"
	}
	l.nft(h.NAT, `
table ip natlab {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" `+masq+`
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state new drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct status dnat accept
		iifname "wan" ct state new drop
	}
}
`)
	return h
}

// Forward makes the host's NAT pass TCP connections to its public address
// and port on to the host's own address and the same port: a port forward,
// for a raw TCP baseline between hosts behind NATs.
func (h *Host) Forward(t testing.TB, port uint16) {
	t.Helper()
	if h.NAT == nil {
		return
	}
	cmd := h.NAT.Command("nft", "add", "rule", "ip", "natlab", "prerouting",
		"iifname", "wan", "tcp", "dport", strconv.Itoa(int(port)),
		"dnat", "to", h.Addr.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("natlab: port forward on %s: %v: %s", h.NAT.Name, err, out)
	}
}

// Blackhole makes the host's NAT (the host itself, for a public host)
// drop every packet between the host and peer, from now on, without a
// reset or an ICMP error: a path that goes silent, as when a NAT on the
// way forgets its mapping or a link dies. Other paths (to the router, to
// other hosts) go on.
func (h *Host) Blackhole(t testing.TB, peer netip.Addr) {
	t.Helper()
	ns := h.NAT
	if ns == nil {
		ns = h.NS
	}
	p := peer.String()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`
table ip natlab_blackhole {
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		ip saddr ` + p + ` drop
		ip daddr ` + p + ` drop
	}
	chain input {
		type filter hook input priority filter - 10; policy accept;
		ip saddr ` + p + ` drop
	}
	chain output {
		type filter hook output priority filter - 10; policy accept;
		ip daddr ` + p + ` drop
	}
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("natlab: blackhole %v in %s: %v: %s", peer, ns.Name, err, bytes.TrimSpace(out))
	}
}

// Command is exec.Command for a process that runs in the namespace.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

func (l *Lab) newNS(role string) *NS {
	l.t.Helper()
	ns := &NS{Name: l.prefix + "-" + role}
	l.ip("netns", "add", ns.Name)
	l.t.Cleanup(func() { l.del(ns) })
	l.ip("-n", ns.Name, "link", "set", "dev", "lo", "up")
	return ns
}

// del ends the namespace's threads (NS.Do) and removes it.
func (l *Lab) del(ns *NS) {
	ns.stop()
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		l.t.Errorf("natlab: remove namespace %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
}

func (l *Lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("natlab: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (l *Lab) nft(ns *NS, rules string) {
	l.t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("natlab: nft in %s: %v: %s", ns.Name, err, bytes.TrimSpace(out))
	}
}

// sysctl sets a net sysctl of the namespace: /proc/sys/net belongs to the
// namespace of the thread that opens it.
func (l *Lab) sysctl(ns *NS, key, value string) {
	l.t.Helper()
	err := ns.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0)
	})
	if err != nil {
		l.t.Fatalf("natlab: sysctl %s in %s: %v", key, ns.Name, err)
	}
}
