package rtcp

import (
	"errors"
	"testing"
)

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
