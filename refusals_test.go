package rtcp

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// TestTLSHandshakeFailuresCounted: a failed TLS handshake is counted,
// not only logged.
func TestTLSHandshakeFailuresCounted(t *testing.T) {
	pki := newTestPKI(t, "dp")
	dp := &DiscoverPoint{TLSConfig: pki.serverConfig()}
	addr := startDP(t, dp)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
	// A plain peer's Aloha where TLS is due; the DP counts, then closes.
	plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIC, N: "plain"}, 0)
	io.Copy(io.Discard, c)
	if got := dp.Stats().Refused["tls_handshake"]; got != 1 {
		t.Errorf("Refused[tls_handshake] = %d, want 1", got)
	}
}

// TestDataTokenRefusals: a data or spare link with a token the DP does
// not know is refused with the reason, counted and logged.
func TestDataTokenRefusals(t *testing.T) {
	events, logger := newLogEvents()
	dp := &DiscoverPoint{Logger: logger}
	addr := startDP(t, dp)
	for i, transport := range []string{wireData, wireSpare} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute)) // only a hang ends here
		plan5link.WriteMessage(c, &plan5.Aloha{V: plan5.Version, R: plan5.RoleIS, N: "x", Transport: transport, Token: "0123456789abcdef"}, 0)
		a, err := plan5link.ReadAloha(plan5.NewReader(c, 0))
		c.Close()
		if err != nil || !strings.Contains(a.Error, "token") {
			t.Fatalf("%s link with an unknown token: %+v, %v; want a refusal that names the token", transport, a, err)
		}
		events.wait(t, "rtcp: data link refused", i+1)
		if got := dp.Stats().Refused["data_token"]; got != uint64(i+1) {
			t.Errorf("Refused[data_token] = %d, want %d", got, i+1)
		}
	}
}
