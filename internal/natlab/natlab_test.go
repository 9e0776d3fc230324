package natlab

import (
	"bytes"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens a TCP listener in ns on all its addresses.
func listen(t *testing.T, ns *NS) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp4", ":0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// observe dials from ns to the listener at addr and returns the remote
// address the listener saw.
func observe(t *testing.T, ns *NS, l net.Listener, addr netip.AddrPort) (local, seen netip.AddrPort) {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.Dial("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %v from %s: %v", addr, ns.Name, err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return c.LocalAddr().(*net.TCPAddr).AddrPort(), s.RemoteAddr().(*net.TCPAddr).AddrPort()
}

func port(l net.Listener) uint16 { return l.Addr().(*net.TCPAddr).AddrPort().Port() }

// TestTopology checks what each kind of host looks like from the public
// network: its NAT's address or its own, and which port.
func TestTopology(t *testing.T) {
	lab := New(t)
	rv := listen(t, lab.Router())
	rvAddr := netip.AddrPortFrom(RouterAddr, port(rv))
	for _, kind := range []NAT{Public, EndpointIndependent, RandomPorts} {
		t.Run(kind.String(), func(t *testing.T) {
			h := lab.AddHost(kind)
			local, seen := observe(t, h.NS, rv, rvAddr)
			if local.Addr() != h.Addr {
				t.Errorf("the host dialed from %v, want its address %v", local, h.Addr)
			}
			if seen.Addr() != h.PublicAddr {
				t.Errorf("the router saw %v, want the host's public address %v", seen, h.PublicAddr)
			}
			if kind != RandomPorts && seen.Port() != local.Port() {
				t.Errorf("the router saw port %d, want the local port %d kept", seen.Port(), local.Port())
			}
		})
	}
}

// TestNATDropsUnasked checks that nothing reaches a host behind a NAT
// unless it asked, and that a port forward lets a connection through.
func TestNATDropsUnasked(t *testing.T) {
	lab := New(t)
	h := lab.AddHost(EndpointIndependent)
	l := listen(t, h.NS)
	to := netip.AddrPortFrom(h.PublicAddr, port(l))
	dial := func(timeout time.Duration) error {
		return lab.Router().Do(func() error {
			d := net.Dialer{Timeout: timeout}
			c, err := d.Dial("tcp4", to.String())
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(200 * time.Millisecond); err == nil {
		t.Fatal("a connection from the public network reached a host behind a NAT")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("dial through the NAT: %v, want a timeout (the NAT drops, not resets)", err)
	}
	h.Forward(t, port(l))
	if err := dial(10 * time.Second); err != nil {
		t.Fatalf("dial through a port forward: %v", err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestRandomPortsPerDestination checks that a random-port NAT shows each
// destination a different port for the same local port.
func TestRandomPortsPerDestination(t *testing.T) {
	lab := New(t)
	h := lab.AddHost(RandomPorts)
	peer := lab.AddHost(Public)
	rv := listen(t, lab.Router())
	pl := listen(t, peer.NS)
	const tries = 4
	same := 0
	for range tries {
		_, a := observe(t, h.NS, rv, netip.AddrPortFrom(RouterAddr, port(rv)))
		_, b := observe(t, h.NS, pl, netip.AddrPortFrom(peer.Addr, port(pl)))
		if a.Port() == b.Port() {
			same++
		}
	}
	if same == tries {
		t.Fatalf("a random-port NAT kept one port toward two destinations %d times in %d", same, tries)
	}
}

// TestCommand runs a process in a namespace.
func TestCommand(t *testing.T) {
	lab := New(t)
	h := lab.AddHost(EndpointIndependent)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip(err)
	}
	out, err := h.Command("ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), h.Addr.String()+"/") {
		t.Fatalf("eth0 in %s has %q, want %v", h.Name, bytes.TrimSpace(out), h.Addr)
	}
}

// TestBlackhole checks that a blackholed peer goes silent while the
// router stays reachable.
func TestBlackhole(t *testing.T) {
	lab := New(t)
	h := lab.AddHost(EndpointIndependent)
	peer := lab.AddHost(Public)
	rv := listen(t, lab.Router())
	pl := listen(t, peer.NS)
	h.Blackhole(t, peer.PublicAddr)
	err := h.Do(func() error {
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(peer.Addr, port(pl)).String())
		if err == nil {
			c.Close()
		}
		return err
	})
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("dial a blackholed peer: %v, want a timeout", err)
	}
	observe(t, h.NS, rv, netip.AddrPortFrom(RouterAddr, port(rv)))
}
