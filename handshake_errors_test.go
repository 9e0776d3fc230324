package rtcp

import (
	"context"
	"errors"
	"rtcp/internal/flowtest"
	"strings"
	"testing"

	"rtcp/protocol/plan5"
)

// TestHandshakeErrors checks that Dial and Listen say what a failed
// handshake most likely means, and still match the error under it.
func TestHandshakeErrors(t *testing.T) {
	pki := newTestPKI(t, "dp")
	secure := startDP(t, &DiscoverPoint{TLSConfig: pki.serverConfig()})
	tests := []struct {
		name  string
		dp    string
		says  string
		under error
	}{
		{"redis", flowtest.Greeter(t, "-ERR unknown command\r\n"), "does not speak rtcp (is it a DP?)", plan5.ErrBadType},
		{"sshd", flowtest.Greeter(t, "SSH-2.0-OpenSSH_9\r\n"), "does not speak rtcp (is it a DP?)", plan5.ErrBadType},
		{"plain to a TLS DP", secure, "closed the connection during the handshake; it may require TLS", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Dialer
			_, derr := d.DialContext(context.Background(), tt.dp, "x")
			var lc ListenConfig
			l, lerr := lc.Listen(context.Background(), tt.dp, "x")
			if lerr == nil {
				l.Close()
			}
			for _, err := range []error{derr, lerr} {
				if err == nil || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), tt.dp) {
					t.Errorf("got %v, want it to name %s and say %q", err, tt.dp, tt.says)
				}
				if tt.under != nil && !errors.Is(err, tt.under) {
					t.Errorf("%v does not match %v", err, tt.under)
				}
			}
		})
	}
}
