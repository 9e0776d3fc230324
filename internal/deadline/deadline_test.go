package deadline

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New()
		if d.Passed() {
			t.Fatal("new deadline has passed")
		}
		d.Set(time.Now().Add(time.Second))
		w := d.Wait()
		select {
		case <-w:
			t.Fatal("passed early")
		default:
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if !d.Passed() {
			t.Fatal("deadline did not pass after its time")
		}
		d.Set(time.Now().Add(time.Hour)) // refresh
		if d.Passed() {
			t.Fatal("refreshed deadline still passed")
		}
		d.Set(time.Time{})
		d.Set(time.Now().Add(-time.Second))
		if !d.Passed() {
			t.Fatal("past deadline did not pass at once")
		}
		d.Stop()
	})
}
