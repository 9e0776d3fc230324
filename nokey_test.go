package rtcp

import (
	"context"
	"errors"
	"testing"
)

// TestNoKeyRefusal: a peer without a key, at a DP that admits only keys,
// is refused with an error matching ErrKeyRequired and ErrUnauthorized,
// on both sides; one with a wrong key is not told it lacks one.
func TestNoKeyRefusal(t *testing.T) {
	addr := startDP(t, &DiscoverPoint{Policy: &Policy{Keys: testKeys()}})
	if _, err := Listen(addr, "svc"); !errors.Is(err, ErrKeyRequired) || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Listen without a key: %v, want ErrKeyRequired and ErrUnauthorized", err)
	}
	if _, err := Dial(addr, "svc"); !errors.Is(err, ErrKeyRequired) || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Dial without a key: %v, want ErrKeyRequired and ErrUnauthorized", err)
	}
	wrong := &Credential{Key: "alice", Secret: []byte("not alice's secret, but long enough")}
	lc := ListenConfig{Credential: wrong}
	if _, err := lc.Listen(context.Background(), addr, "svc"); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrKeyRequired) {
		t.Errorf("Listen with a wrong key: %v, want ErrUnauthorized, not ErrKeyRequired", err)
	}
}
