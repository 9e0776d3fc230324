package rtcp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestSetPolicyOpenSessions: a new policy ends at once the links and the
// sessions it no longer allows, and leaves alone those it still allows,
// on every client transport.
func TestSetPolicyOpenSessions(t *testing.T) {
	printer := NameRule{Name: "printer", Owners: []string{"alice"}, Clients: []string{"bob", "mallory"}}
	dpv := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{Keys: testKeys(),
		Names: []NameRule{printer, {Name: "scanner", Owners: []string{"mallory"}}}}}
	dp := startDP(t, dpv)

	aliceEvents := newEventLog()
	printerL := listen(t, &ListenConfig{Credential: alice, OnEvent: aliceEvents.onEvent}, dp, "printer")
	echo(t, printerL)
	malloryEvents := newEventLog()
	scannerL := listen(t, &ListenConfig{Credential: mallory, OnEvent: malloryEvents.onEvent,
		MinBackoff: time.Hour, MaxBackoff: time.Hour}, dp, "scanner")
	echo(t, scannerL)

	type session struct {
		name string
		c    net.Conn
	}
	var keep, lose []session
	for _, tr := range []Transport{TransportJSON, TransportYamux} {
		for _, who := range []*Credential{bob, mallory} {
			c, err := (&Dialer{Credential: who, Transport: tr}).DialContext(context.Background(), dp, "printer")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := session{who.Key + " over " + tr.String(), c}
			ping(t, c, "before")
			if who == bob {
				keep = append(keep, s)
			} else {
				lose = append(lose, s)
			}
		}
	}

	// mallory's key is revoked.
	keys := testKeys()
	delete(keys, "mallory")
	printer.Clients = []string{"bob"}
	if err := dpv.SetPolicy(&Policy{Keys: keys, Names: []NameRule{printer}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range lose {
		s.c.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
		if _, err := io.ReadAll(s.c); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: session read %v after its key was revoked, want it cut", s.name, err)
		}
	}
	for _, s := range keep {
		ping(t, s.c, "after")
	}
	if e, _ := malloryEvents.next(t); e.Kind != EventLinkUp {
		t.Fatalf("mallory's server: %v, want link up", e)
	}
	malloryEvents.next(t) // registered
	if e, _ := malloryEvents.next(t); e.Kind != EventLinkDown {
		t.Fatalf("mallory's server after its key was revoked: %v, want link down", e)
	}
	select {
	case e := <-malloryEvents.ch:
		if e.Kind != EventReconnecting || !errors.Is(e.Err, ErrUnauthorized) {
			t.Errorf("mallory's server dialled again: %v, want refused as unauthorized", e)
		}
	case <-time.After(time.Minute):
		t.Fatal("mallory's server did not dial again")
	}
	wantUnauthorized(t, dialErr(dp, "printer", &Dialer{Credential: mallory}), `key "mallory"`)
	if n := printerL.(*Listener).NumLinks(); n != 1 {
		t.Errorf("alice's server has %d links, want its 1 untouched", n)
	}
	aliceEvents.next(t) // link up
	aliceEvents.next(t) // registered
	select {
	case e := <-aliceEvents.ch:
		t.Errorf("alice's server: %v after a policy that still allows it", e)
	default:
	}
}

// TestSetPolicyNewSecret: giving a key a new secret cuts the links and
// sessions that proved the old one; the key's new secret is admitted,
// and the other keys go on.
func TestSetPolicyNewSecret(t *testing.T) {
	dpv := &DiscoverPoint{Logger: testLogger(), Policy: &Policy{Keys: testKeys()}}
	dp := startDP(t, dpv)
	echo(t, listen(t, &ListenConfig{Credential: alice}, dp, "printer"))
	malloryEvents := newEventLog()
	echo(t, listen(t, &ListenConfig{Credential: mallory, OnEvent: malloryEvents.onEvent,
		MinBackoff: time.Hour, MaxBackoff: time.Hour}, dp, "scanner"))
	bobs, err := (&Dialer{Credential: bob}).DialContext(context.Background(), dp, "printer")
	if err != nil {
		t.Fatal(err)
	}
	defer bobs.Close()
	alices, err := (&Dialer{Credential: alice, Transport: TransportYamux}).DialContext(context.Background(), dp, "printer")
	if err != nil {
		t.Fatal(err)
	}
	defer alices.Close()

	keys := testKeys()
	newBob := &Credential{Key: "bob", Secret: []byte("bob-a-new-secret-0123456789abcd")}
	keys["bob"] = newBob.Secret
	keys["mallory"] = []byte("mallory-a-new-secret-0123456789")
	if err := dpv.SetPolicy(&Policy{Keys: keys}); err != nil {
		t.Fatal(err)
	}
	bobs.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails, not blocks
	if _, err := io.ReadAll(bobs); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("bob's session read %v after bob's secret changed, want it cut", err)
	}
	for e, _ := malloryEvents.next(t); e.Kind != EventLinkDown; e, _ = malloryEvents.next(t) {
	}
	ping(t, alices, "alice goes on")
	c, err := (&Dialer{Credential: newBob}).DialContext(context.Background(), dp, "printer")
	if err != nil {
		t.Fatalf("bob with the new secret: %v", err)
	}
	ping(t, c, "new bob")
	c.Close()
	wantUnauthorized(t, dialErr(dp, "printer", &Dialer{Credential: bob}), `key "bob" failed`)
}

// gateRegistry is a MemoryRegistry whose Register waits for release,
// having said so on entered.
type gateRegistry struct {
	*MemoryRegistry
	entered chan struct{}
	release chan struct{}
}

func (r *gateRegistry) Register(ctx context.Context, reg Registration) error {
	select {
	case r.entered <- struct{}{}:
	default:
	}
	select {
	case <-r.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.MemoryRegistry.Register(ctx, reg)
}

// TestSetPolicyDuringRegistration: a server whose key is revoked while
// its link is being registered (after the DP checked the key, before the
// link is in the table that SetPolicy sweeps) does not keep the link.
func TestSetPolicyDuringRegistration(t *testing.T) {
	reg := &gateRegistry{MemoryRegistry: new(MemoryRegistry), entered: make(chan struct{}, 1), release: make(chan struct{})}
	dpv := &DiscoverPoint{Logger: testLogger(), Registry: reg, Policy: &Policy{Keys: testKeys(),
		Names: []NameRule{{Name: "scanner", Owners: []string{"mallory"}}}}}
	dp := startDP(t, dpv)
	lc := &ListenConfig{Credential: mallory, MinBackoff: time.Hour, MaxBackoff: time.Hour}
	done := make(chan error, 1)
	go func() {
		l, err := lc.Listen(context.Background(), dp, "scanner")
		if err == nil {
			l.Close()
		}
		done <- err
	}()
	<-reg.entered
	keys := testKeys()
	delete(keys, "mallory")
	if err := dpv.SetPolicy(&Policy{Keys: keys}); err != nil {
		t.Fatal(err)
	}
	close(reg.release)
	if err := <-done; !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Listen with a key revoked during its registration returned %v, want ErrUnauthorized", err)
	}
	if n := dpv.Stats().Links; n != 0 {
		t.Errorf("the DP holds %d links after the revoked server's registration, want 0", n)
	}
}
