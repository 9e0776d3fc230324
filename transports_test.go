package rtcp

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// TestTransportNotOffered: Listen with a transport the DP does not offer
// fails with ErrTransportNotOffered, whether an rtcp DP refuses it or a
// plain DP answers without it; other refusals do not match it.
func TestTransportNotOffered(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer plan5.Aloha
		want   bool
	}{
		{"refused", plan5.Aloha{V: 10000, R: plan5.RoleDP, Error: errTransportReason("tcp") + " (it speaks the plain protocol)"}, true},
		{"plain", plan5.Aloha{V: 10000, R: plan5.RoleDP, N: "plain"}, true},
		{"other refusal", plan5.Aloha{V: 10000, R: plan5.RoleDP, Error: "rtcp: not today"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if _, err := plan5.NewReader(c, plan5.DefaultMaxLine).ReadMessage(); err != nil {
					return
				}
				plan5link.WriteMessage(c, &tt.answer, 0)
			})
			lc := ListenConfig{Transport: TransportTCP}
			ln, err := lc.Listen(context.Background(), l.Addr().String(), "x")
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if got := errors.Is(err, ErrTransportNotOffered); got != tt.want {
				t.Errorf("Listen: %v; errors.Is ErrTransportNotOffered = %v, want %v", err, got, tt.want)
			}
		})
	}
}
