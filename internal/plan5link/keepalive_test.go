package plan5link

import (
	"bytes"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"rtcp/internal/mux"
	"rtcp/protocol/plan5"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeepAlive(t *testing.T) {
	for _, c := range []struct {
		name         string
		ours, theirs int // HeartBeat of each Aloha
		send, idle   time.Duration
	}{
		{"both ask", 15000, 1000, time.Second, 30 * time.Second},
		{"plain peer", 15000, 0, 0, 0},
		{"we ask for none", 0, 1000, time.Second, 0},
		{"a peer asks too often", 1000, 1, MinHeartBeat, 2 * time.Second},
		{"a peer asks for years", 1000, math.MaxInt, 24 * time.Hour, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			send, idle := KeepAlive(&plan5.Aloha{HeartBeat: c.ours}, &plan5.Aloha{HeartBeat: c.theirs})
			if send != c.send || idle != c.idle {
				t.Errorf("KeepAlive = %v, %v; want %v, %v", send, idle, c.send, c.idle)
			}
		})
	}
	for d, want := range map[time.Duration]int{0: 0, -time.Second: 0, time.Millisecond: 100, 1500 * time.Microsecond * 1000: 1500, 15 * time.Second: 15000} {
		if got := HeartBeatMS(d); got != want {
			t.Errorf("HeartBeatMS(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestHeartbeatWire(t *testing.T) {
	var buf bytes.Buffer
	fr := NewFramer(plan5.NewReader(&buf, 0), &buf)
	fr.SetHeartbeat(&plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "printer-7", Window: 1, HeartBeat: 1000})
	if err := fr.WriteFrame(&mux.Frame{Kind: mux.KindKeepAlive}); err != nil {
		t.Fatal(err)
	}
	fr.Flush()
	const want = "0\n{\"V\":10000,\"R\":2,\"N\":\"printer-7\"}\n"
	if got := buf.String(); got != want {
		t.Fatalf("heartbeat = %q, want %q", got, want)
	}
	// The receiver skips it: the next frame is what follows.
	buf.WriteString("2\n{\"X\":3}\n")
	f, err := fr.ReadFrame()
	if err != nil || f.Kind != mux.KindAck || f.ID != 3 {
		t.Fatalf("ReadFrame after a heartbeat = %+v, %v; want the Ack", f, err)
	}
}
