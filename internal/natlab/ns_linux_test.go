package natlab

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDo checks that Do reuses the namespace's thread for calls one after
// another, runs calls that overlap on threads of their own, and fails
// once the lab's test has ended.
func TestDo(t *testing.T) {
	var ns *NS
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		ns = lab.AddHost(EndpointIndependent).NS
		tid := func() (id int) {
			if err := ns.Do(func() error { id = unix.Gettid(); return nil }); err != nil {
				t.Fatal(err)
			}
			return id
		}
		if a, b := tid(), tid(); a != b {
			t.Errorf("two calls one after another ran on threads %d and %d, want one thread reused", a, b)
		}
		// The first call waits until the second has run: overlapping
		// calls must not wait for each other.
		release := make(chan struct{})
		first := make(chan error, 1)
		started := make(chan struct{})
		go func() {
			first <- ns.Do(func() error {
				close(started)
				<-release
				return nil
			})
		}()
		<-started
		if err := ns.Do(func() error { close(release); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		want := errors.New("f's own")
		if err := ns.Do(func() error { return want }); err != want {
			t.Errorf("Do returned %v, want f's error", err)
		}
	})
	if err := ns.Do(func() error { return nil }); err == nil {
		t.Error("Do ran after the lab's test ended")
	}
}
