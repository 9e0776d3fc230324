package rtcp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// badNames are names no entry point takes, each for another reason.
var badNames = []string{
	"",
	"a@b",
	"a b",
	"a/b",
	"..",
	"a.b",
	"pi\n7",
	"-pi",
	"pi-",
	"Pi-7",
	"pi_7",
	"café",
	"\xff",
	strings.Repeat("a", 64),
	"cccp:",     // a door name with no ID
	"Cccp:x",    // a door that is not a label
	"cccp:a\nb", // a control character in a door's ID
	":x",
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "0", "pi-7", "printer-7", "a-b-c", "7up", "xn--caf-dma", strings.Repeat("a", 63), "0123abcd-0123-4abc-8def-0123456789ab"} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
		if err := ValidDoorName(name); err != nil {
			t.Errorf("ValidDoorName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range append(badNames, "cccp:CLD-1", "mihini:plc-7") {
		err := ValidName(name)
		var ne *NameError
		if !errors.Is(err, ErrBadName) || !errors.As(err, &ne) || ne.Name != name {
			t.Errorf("ValidName(%q) = %v, want a *NameError matching ErrBadName", name, err)
		}
	}
}

func TestValidDoorName(t *testing.T) {
	for _, name := range []string{"cccp:CLD-1", "cccp:a b/../c é", "mihini:plc-7", "x:" + strings.Repeat("é", MaxDoorIDLen/2), "cccp:a:b"} {
		if err := ValidDoorName(name); err != nil {
			t.Errorf("ValidDoorName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range append(badNames, "x:"+strings.Repeat("a", MaxDoorIDLen+1), "x:a\x7fb", "x:\xffa") {
		if name == "" || !strings.Contains(name, ":") && ValidName(name) == nil {
			continue
		}
		if err := ValidDoorName(name); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidDoorName(%q) = %v, want ErrBadName", name, err)
		}
	}
}

// TestNameErrorSaysWhatToDo: an upper-case name is answered with its
// lower-case spelling.
func TestNameErrorSaysWhatToDo(t *testing.T) {
	var ne *NameError
	if !errors.As(ValidName("Pi-7"), &ne) || !strings.Contains(ne.Reason, `"pi-7"`) {
		t.Errorf("ValidName(\"Pi-7\") = %v; want a reason that offers \"pi-7\"", ne)
	}
}

// FuzzValidName: the rules never panic, ValidName accepts exactly DNS
// labels, every ValidName is a ValidDoorName, and an error's text is
// one line of printable text (it travels in an Aloha and in logs).
func FuzzValidName(f *testing.F) {
	for _, s := range append(badNames, "pi-7", "a", "cccp:CLD-1", "xn--caf-dma", "a:b:c") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidName(name)
		derr := ValidDoorName(name)
		if err == nil {
			if len(name) < 1 || len(name) > MaxNameLen || name[0] == '-' || name[len(name)-1] == '-' {
				t.Fatalf("ValidName accepted %q", name)
			}
			for i := 0; i < len(name); i++ {
				if !nameByte(name[i]) {
					t.Fatalf("ValidName accepted %q with %q", name, name[i])
				}
			}
			if derr != nil {
				t.Fatalf("ValidDoorName(%q) = %v, but ValidName accepts it", name, derr)
			}
		}
		if derr == nil && err != nil {
			door, id, ok := strings.Cut(name, ":")
			if !ok || ValidName(door) != nil || id == "" || len(id) > MaxDoorIDLen {
				t.Fatalf("ValidDoorName accepted %q", name)
			}
		}
		for _, e := range []error{err, derr} {
			if e == nil {
				continue
			}
			if !errors.Is(e, ErrBadName) || !(&RefusedError{Reason: e.Error()}).Is(ErrBadName) {
				t.Fatalf("error %v for %q does not match ErrBadName, or not as a refusal", e, name)
			}
			for _, r := range e.Error() {
				if !unicode.IsPrint(r) {
					t.Fatalf("error for %q holds %U: %q", name, r, e)
				}
			}
		}
		checkPattern(name) // never panics
	})
}

func TestPolicyRefusesPatternsThatMatchNoName(t *testing.T) {
	for _, p := range []string{"pi-7", "printer-*", "site-[0-9]*", "*", "cccp:*", "cccp:CLD-*", "?-7", `pi\-7`, "a*:*"} {
		pol := &Policy{Names: []NameRule{{Name: p}}}
		if err := pol.Validate(); err != nil {
			t.Errorf("rule %q: %v, want nil", p, err)
		}
	}
	for _, p := range []string{"Pi-7", "Printer-*", "pi.*", "a b", "cccp:", "*_x", `pi\.7`, "-pi"} {
		pol := &Policy{Names: []NameRule{{Name: p}}}
		if err := pol.Validate(); !errors.Is(err, ErrBadName) {
			t.Errorf("rule %q: %v, want ErrBadName", p, err)
		}
		if err := new(DiscoverPoint).SetPolicy(pol); !errors.Is(err, ErrBadName) {
			t.Errorf("SetPolicy with rule %q: %v, want ErrBadName", p, err)
		}
	}
}

// TestListenDialRefuseBadNames: Listen and Dial refuse a bad name before
// they dial: the DP is never asked.
func TestListenDialRefuseBadNames(t *testing.T) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	for _, name := range badNames {
		if name == "" {
			continue // a direct server or client
		}
		l, err := Listen(addr, name)
		if err == nil {
			l.Close()
		}
		if !errors.Is(err, ErrBadName) {
			t.Errorf("Listen(%q) = %v, want ErrBadName", name, err)
		}
		lc := ListenConfig{WaitForDP: true, Transport: TransportTCP}
		if _, err := lc.Listen(context.Background(), addr, name); !errors.Is(err, ErrBadName) {
			t.Errorf("ListenConfig.Listen(%q) = %v, want ErrBadName", name, err)
		}
		if ValidDoorName(name) == nil {
			continue
		}
		for _, d := range []*Dialer{{}, {Transport: TransportYamux}} {
			c, err := d.DialContext(context.Background(), addr+","+addr, name)
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, ErrBadName) {
				t.Errorf("Dial(%q) = %v, want ErrBadName", name, err)
			}
		}
	}
	if n := dp.Stats().Refused["bad_name"]; n != 0 {
		t.Errorf("the DP refused %d names: Listen or Dial asked it", n)
	}
	// A door's name is asked for: there is no such server.
	if _, err := Dial(addr, "cccp:CLD-1"); !errors.Is(err, ErrRefused) || errors.Is(err, ErrBadName) {
		t.Errorf("Dial of a door's name = %v, want a refusal for want of a server", err)
	}
	if _, err := Listen(addr, "cccp:CLD-1"); !errors.Is(err, ErrBadName) {
		t.Errorf("Listen of a door's name = %v, want ErrBadName", err)
	}
}

// plainAloha sends a's Aloha on a new connection to the DP at addr and
// returns the connection and the DP's answer.
func plainAloha(t *testing.T, addr string, a *plan5.Aloha) (net.Conn, *plan5.Reader, *plan5.Aloha) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
	if err := plan5link.WriteMessage(c, a, 0); err != nil {
		t.Fatal(err)
	}
	r := plan5.NewReader(c, 0)
	theirs, err := plan5link.ReadAloha(r)
	if err != nil {
		t.Fatalf("reading the DP's Aloha: %v", err)
	}
	return c, r, theirs
}

// TestDPRefusesServerNames: a server that registers a bad name over the
// wire is answered with a refusal it can read, and only its connection
// ends: the DP serves the servers it has.
func TestDPRefusesServerNames(t *testing.T) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	echo(t, listen(t, nil, addr, "good"))
	want := uint64(0)
	for _, name := range append(badNames, "cccp:CLD-1") {
		if name == "" {
			continue // refused as a server without a name
		}
		for _, transport := range []string{"", wireYamux, wireTCP} {
			c, _, a := plainAloha(t, addr, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: name, Transport: transport})
			if !(&RefusedError{Reason: a.Error}).Is(ErrBadName) {
				t.Errorf("a server of %q (transport %q) was answered %+v; want a refusal for its name", name, transport, a)
			}
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the refusal of %q: %v, want the connection closed", name, err)
			}
			want++
		}
	}
	if got := dp.Stats().Refused["bad_name"]; got != want {
		t.Errorf("Refused[bad_name] = %d, want %d", got, want)
	}
	c, err := Dial(addr, "good")
	if err != nil {
		t.Fatalf("the DP's other server after the refusals: %v", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hi"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

// TestDPRefusesClientNames: a client that asks for a bad name, on either
// client leg, gets an Ack X=-1 with a reason that matches ErrBadName.
func TestDPRefusesClientNames(t *testing.T) {
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	want := uint64(0)
	for _, name := range badNames {
		if ValidDoorName(name) == nil {
			continue
		}
		for _, transport := range []string{"", wireRaw} {
			c, _, a := plainAloha(t, addr, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, N: "plain", Transport: transport})
			if a.Error != "" {
				t.Fatalf("the DP refused a client: %s", a.Error)
			}
			if err := plan5link.WriteMessage(c, &plan5.Connect{N: name}, 0); err != nil {
				t.Fatal(err)
			}
			// Read the answer plainly: a refused Connect is the only
			// message, on either leg.
			br := bufio.NewReader(c)
			typ, m := plainLine(t, br)
			x, _ := m["X"].(float64)
			reason, _ := m["R"].(string)
			if typ != '2' || x != -1 || !(&RefusedError{Reason: reason}).Is(ErrBadName) {
				t.Errorf("Connect to %q (transport %q) was answered %c %v; want Ack X=-1 for its name", name, transport, typ, m)
			}
			want++
		}
	}
	if got := dp.Stats().Refused["bad_name"]; got != want {
		t.Errorf("Refused[bad_name] = %d, want %d", got, want)
	}
}

// TestDoorEntryPointsRefuseBadNames: AddLink, AddLinkAs, ServePort,
// ListenAndServePort, Ports and Relay refuse a bad name; they take a
// door's name.
func TestDoorEntryPointsRefuseBadNames(t *testing.T) {
	dp := new(DiscoverPoint)
	startDP(t, dp)
	for _, name := range badNames {
		if ValidDoorName(name) == nil {
			continue
		}
		if _, err := dp.AddLink(name, "o", uncomparableLink{}); !errors.Is(err, ErrBadName) {
			t.Errorf("AddLink(%q) = %v, want ErrBadName", name, err)
		}
		if _, err := dp.AddLinkAs("", name, "o", uncomparableLink{}); !errors.Is(err, ErrBadName) {
			t.Errorf("AddLinkAs(%q) = %v, want ErrBadName", name, err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := dp.ServePort(l, name); !errors.Is(err, ErrBadName) {
			t.Errorf("ServePort(%q) = %v, want ErrBadName", name, err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("ServePort(%q) left its listener open: %v", name, err)
		}
		if err := dp.ListenAndServePort("127.0.0.1:0", name); !errors.Is(err, ErrBadName) {
			t.Errorf("ListenAndServePort(%q) = %v, want ErrBadName", name, err)
		}
		bad := &DiscoverPoint{Ports: map[string]string{"127.0.0.1:0": name}}
		if err := bad.ListenAndServe("127.0.0.1:0"); !errors.Is(err, ErrBadName) {
			t.Errorf("ListenAndServe with Ports naming %q = %v, want ErrBadName", name, err)
		}
		bad.Close()
		c1, c2 := net.Pipe()
		if err := dp.Relay(c1, name, "client"); !errors.Is(err, ErrBadName) {
			t.Errorf("Relay(%q) = %v, want ErrBadName", name, err)
		}
		if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("Relay(%q) left the client's connection open: %v", name, err)
		}
	}
	remove, err := dp.AddLink("cccp:CLD-1", "o", newPipeLink(t))
	if err != nil {
		t.Fatalf("AddLink of a door's name: %v", err)
	}
	remove()
}
