package rtcp

import (
	"context"
	"errors"
	"testing"

	"rtcp/protocol/plan5"
)

// TestTransportNotOffered: Listen's error for a Transport the DP does not
// speak matches ErrTransportNotOffered, whether the DP refused it or, an
// older or plain DP, answered without it.
func TestTransportNotOffered(t *testing.T) {
	plain, _ := fakeDP(t, nil, &plan5.Aloha{V: plan5.Version, R: plan5.RoleDP, N: "plain"})
	for _, tr := range []Transport{TransportYamux, TransportTCP} {
		lc := ListenConfig{Transport: tr}
		l, err := lc.Listen(context.Background(), plain, "svc")
		if err == nil {
			l.Close()
		}
		if !errors.Is(err, ErrTransportNotOffered) {
			t.Errorf("%v to a plain DP: %v, want ErrTransportNotOffered", tr, err)
		}
	}
	dp := new(DiscoverPoint)
	addr := startDP(t, dp)
	_, _, a := plainAloha(t, addr, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "svc", Transport: "carrier-pigeon"})
	if re := (&RefusedError{Reason: a.Error}); !re.Is(ErrTransportNotOffered) || !re.Is(ErrRefused) {
		t.Errorf("a server asking for an unknown transport was answered %+v; want a refusal matching ErrTransportNotOffered", a)
	}
}

// TestNoKeyRefusal: a peer without a key, at a DP that admits only keys,
// is refused with an error matching ErrUnauthorized, on both sides.
func TestNoKeyRefusal(t *testing.T) {
	addr := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}})
	if _, err := Listen(addr, "svc"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Listen without a key: %v, want ErrUnauthorized", err)
	}
	if _, err := Dial(addr, "svc"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Dial without a key: %v, want ErrUnauthorized", err)
	}
}
