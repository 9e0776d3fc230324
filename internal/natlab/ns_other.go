//go:build !linux

package natlab

import (
	"errors"
	"testing"
)

// Do fails: network namespaces are Linux's (New skips elsewhere).
func (n *NS) Do(f func() error) error {
	return errors.New("natlab: network namespaces need Linux")
}

// nsPool is empty: Do starts nothing here.
type nsPool struct{}

func (n *NS) stop() {}

func removeStale(t testing.TB) {}
