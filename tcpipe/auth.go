package tcpipe

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	wire "rtcp/protocol/tcpipe"
)

const (
	// minSecret is the shortest secret accepted: the proofs are HMACs
	// of it, and a short one can be guessed offline from a handshake.
	minSecret = 16

	defaultHandshakeTimeout = 10 * time.Second

	// maxHandshakes bounds the partner links in their handshake at once,
	// so that strangers who connect and say nothing pin little.
	maxHandshakes = 16

	// bindingLabel names the TLS exported keying material a proof is
	// bound to on a TLS link (SPEC.md, "Authentication").
	bindingLabel = "EXPORTER-rtcp-tcpipe"
)

// errPartnerUp refuses a second partner while the first is up and no
// secret can tell the partner from a stranger.
var errPartnerUp = errors.New("tcpipe: a partner link is already up, and without a shared secret nobody can prove to be the partner; one partner at a time (set the same Secret on both instances, rtcp tcpipe -secret-file, to let the partner replace a link it lost)")

// checkSecret reports a secret too short to be safe.
func checkSecret(secret []byte) error {
	if len(secret) > 0 && len(secret) < minSecret {
		return fmt.Errorf("tcpipe: the shared secret is %d bytes; use at least %d random bytes (head -c 32 /dev/urandom | base64)", len(secret), minSecret)
	}
	return nil
}

// handshakeError is a failed handshake: the peer did not prove it holds
// the secret, or broke the handshake.
type handshakeError struct{ msg string }

func (e *handshakeError) Error() string { return e.msg }

func handshakeErrorf(format string, args ...any) error {
	return &handshakeError{msg: fmt.Sprintf(format, args...)}
}

// serverHandshake runs the server's side of the handshake on c, reading
// with br. It returns nil once the client has proved it holds secret and
// has been sent the server's proof; otherwise it has told the client why
// where it could.
func serverHandshake(c net.Conn, br *bufio.Reader, secret []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	ns := make([]byte, wire.NonceLen)
	rand.Read(ns)
	if err := writeAuth(c, wire.AuthMessage{Step: wire.AuthChallenge, Nonce: ns}); err != nil {
		return handshakeErrorf("tcpipe: cannot send the challenge: %v", err)
	}
	m, err := wire.NewReader(br).ReadAuth()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return handshakeErrorf("tcpipe: no proof within %v of the challenge: does the partner hold the secret? (an original tcpipe never does)", timeout)
		}
		return handshakeErrorf("tcpipe: no proof: %v", err)
	}
	refuse := func(why string) error {
		writeAuth(c, wire.AuthMessage{Step: wire.AuthRefusal, Reason: why})
		return handshakeErrorf("tcpipe: %s", why)
	}
	if m.Step != wire.AuthProof {
		return refuse(fmt.Sprintf("authentication %v where the Proof was due", m.Step))
	}
	binding, err := tlsBinding(c)
	if err != nil {
		return refuse(err.Error())
	}
	nc := m.Nonce
	if !hmac.Equal(m.MAC, wire.AuthMAC(secret, false, ns, nc, binding)) {
		return refuse("wrong proof: the two instances do not hold the same secret")
	}
	if err := writeAuth(c, wire.AuthMessage{Step: wire.AuthWelcome, MAC: wire.AuthMAC(secret, true, ns, nc, binding)}); err != nil {
		return handshakeErrorf("tcpipe: cannot send the server's proof: %v", err)
	}
	return nil
}

// clientHandshake runs the client's side of the handshake on c, reading
// with br. It returns nil once the server has proved it holds secret.
func clientHandshake(c net.Conn, br *bufio.Reader, secret []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	r := wire.NewReader(br)
	m, err := r.ReadAuth()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return handshakeErrorf("tcpipe: the server sent no challenge within %v: does it hold the secret? (give both instances the same secret, or neither)", timeout)
		}
		return handshakeErrorf("tcpipe: no challenge from the server: %v", err)
	}
	if m.Step != wire.AuthChallenge {
		return handshakeErrorf("tcpipe: the server sent authentication %v where its Challenge was due", m.Step)
	}
	ns := append([]byte(nil), m.Nonce...)
	binding, err := tlsBinding(c)
	if err != nil {
		return handshakeErrorf("tcpipe: %v", err)
	}
	nc := make([]byte, wire.NonceLen)
	rand.Read(nc)
	if err := writeAuth(c, wire.AuthMessage{Step: wire.AuthProof, Nonce: nc, MAC: wire.AuthMAC(secret, false, ns, nc, binding)}); err != nil {
		return handshakeErrorf("tcpipe: cannot send the proof: %v", err)
	}
	m, err = r.ReadAuth()
	if err != nil {
		return handshakeErrorf("tcpipe: no answer to the proof: %v", err)
	}
	switch m.Step {
	case wire.AuthWelcome:
		if !hmac.Equal(m.MAC, wire.AuthMAC(secret, true, ns, nc, binding)) {
			return handshakeErrorf("tcpipe: the server's proof is wrong: it does not hold this secret; it is not the partner")
		}
		return nil
	case wire.AuthRefusal:
		return handshakeErrorf("tcpipe: the server refused the proof: %s", m.Reason)
	}
	return handshakeErrorf("tcpipe: the server sent authentication %v where its Welcome was due", m.Step)
}

func writeAuth(c net.Conn, m wire.AuthMessage) error {
	b, err := wire.AppendAuth(nil, m)
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

// tlsBinding returns what ties a proof to c's TLS connection, or nil if c
// is not TLS.
func tlsBinding(c net.Conn) ([]byte, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %v", err)
	}
	cs := tc.ConnectionState()
	b, err := cs.ExportKeyingMaterial(bindingLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("cannot bind the proof to TLS (%v): use TLS 1.3", err)
	}
	return b, nil
}

// keepAlive makes the kernel probe an idle partner link, so that a link
// whose partner vanished is noticed within about 30 s: until it is, a
// server without a secret refuses a new partner.
func keepAlive(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
	}
}
