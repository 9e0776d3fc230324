package yamuxlink

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine of hashicorp/yamux needs ignoring: every test closes its
// sessions, and hashicorp's Close waits for its read and write loops (its
// keepalive and ping-answer goroutines end with the session).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
