package tcpipe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// The authentication handshake is an addition of ours (SPEC.md,
// "Authentication"): it runs only between two instances that both hold a
// shared secret, before the first frame. Without a secret nothing of it is
// on the wire, as with the original.
const (
	// AuthMagic opens every authentication message, big-endian: "rtcp"
	// in ASCII, so that a peer reading it as a frame sees a wrong magic.
	AuthMagic = 0x72746370

	// NonceLen is the size of each side's random nonce.
	NonceLen = 32

	// MACLen is the size of a proof: an HMAC-SHA256.
	MACLen = sha256.Size

	// MaxReasonLen is the most bytes a Refusal's reason carries.
	MaxReasonLen = 200
)

// AuthStep is the kind of an authentication message.
type AuthStep uint8

// The steps of the handshake, in order.
const (
	AuthChallenge AuthStep = 1 // server -> client: the server's nonce
	AuthProof     AuthStep = 2 // client -> server: the client's nonce and proof
	AuthWelcome   AuthStep = 3 // server -> client: the server's proof
	AuthRefusal   AuthStep = 4 // server -> client: why the client is refused
)

// String returns the step's name, such as "Challenge".
func (s AuthStep) String() string {
	switch s {
	case AuthChallenge:
		return "Challenge"
	case AuthProof:
		return "Proof"
	case AuthWelcome:
		return "Welcome"
	case AuthRefusal:
		return "Refusal"
	}
	return "AuthStep(" + strconv.Itoa(int(s)) + ")"
}

// AuthMessage is one message of the authentication handshake.
type AuthMessage struct {
	Step AuthStep

	// Nonce is the sender's nonce, NonceLen bytes, in a Challenge and a
	// Proof.
	Nonce []byte

	// MAC is the sender's proof, MACLen bytes, in a Proof and a Welcome
	// (see [AuthMAC]).
	MAC []byte

	// Reason says why, in a Refusal: 1 to MaxReasonLen bytes of UTF-8.
	Reason string
}

// maxAuthBody is the largest body an authentication message may declare:
// a step byte and a Refusal's reason.
const maxAuthBody = 1 + MaxReasonLen

// check reports why m cannot be on the wire.
func (m AuthMessage) check() error {
	want := func(nonce, mac int, reason bool) error {
		if len(m.Nonce) != nonce || len(m.MAC) != mac || (m.Reason != "") != reason {
			return invalidf("tcpipe: authentication %v carries %d bytes; want %s",
				m.Step, len(m.Nonce)+len(m.MAC)+len(m.Reason), m.Step.layout())
		}
		return nil
	}
	switch m.Step {
	case AuthChallenge:
		return want(NonceLen, 0, false)
	case AuthProof:
		return want(NonceLen, MACLen, false)
	case AuthWelcome:
		return want(0, MACLen, false)
	case AuthRefusal:
		if err := want(0, 0, true); err != nil {
			return err
		}
		if len(m.Reason) > MaxReasonLen || !utf8.ValidString(m.Reason) {
			return invalidf("tcpipe: authentication Refusal reason of %d bytes; want 1 to %d bytes of UTF-8", len(m.Reason), MaxReasonLen)
		}
		return nil
	}
	return invalidf("tcpipe: unknown authentication step %d (want Challenge 1, Proof 2, Welcome 3 or Refusal 4)", uint8(m.Step))
}

// layout describes what a message of step s carries, for errors.
func (s AuthStep) layout() string {
	switch s {
	case AuthChallenge:
		return "a 32-byte nonce"
	case AuthProof:
		return "a 32-byte nonce and a 32-byte proof"
	case AuthWelcome:
		return "a 32-byte proof"
	}
	return "a reason of 1 to 200 bytes"
}

// AppendAuth appends the encoding of m to dst and returns the extended
// slice, or dst unchanged and an error wrapping [ErrInvalidFrame] if m is
// not a valid message.
func AppendAuth(dst []byte, m AuthMessage) ([]byte, error) {
	if err := m.check(); err != nil {
		return dst, err
	}
	size := 1 + len(m.Nonce) + len(m.MAC) + len(m.Reason)
	dst = binary.BigEndian.AppendUint32(dst, AuthMagic)
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = append(dst, byte(m.Step))
	dst = append(dst, m.Nonce...)
	dst = append(dst, m.MAC...)
	return append(dst, m.Reason...), nil
}

// ReadAuth reads the next authentication message. Its Nonce and MAC alias
// the Reader's buffer and are valid only until the next read.
//
// A tcpipe frame where an authentication message is due returns an error
// that says the peer holds no secret; any other header that cannot open
// one, or a body that breaks the layout, returns an error wrapping
// [ErrCorrupt]: the handshake has failed and the link must be closed.
// After any error the Reader is out of step and every later read fails.
func (r *Reader) ReadAuth() (AuthMessage, error) {
	if r.err != nil {
		return AuthMessage{}, r.err
	}
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if n > 0 || err == io.EOF {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return AuthMessage{}, r.fail(fmt.Errorf("tcpipe: authentication header cut short after %d of %d bytes: %w", n, HeaderLen, err))
		}
		return AuthMessage{}, err // nothing consumed: a deadline, say
	}
	magic := binary.BigEndian.Uint32(r.hdr[:4])
	size := binary.BigEndian.Uint32(r.hdr[4:])
	switch {
	case magic == Magic:
		return AuthMessage{}, r.fail(corruptf("tcpipe: the peer sent a tcpipe frame where an authentication message was due: it holds no shared secret (an original tcpipe never does); give both instances the same secret, or neither"))
	case magic != AuthMagic:
		return AuthMessage{}, r.fail(corruptf("tcpipe: authentication header has magic 0x%08x, want 0x%08x (\"rtcp\"): the peer is not an rtcp tcpipe instance", magic, AuthMagic))
	case size < 1 || size > maxAuthBody:
		return AuthMessage{}, r.fail(corruptf("tcpipe: authentication header has body size %d, want 1 to %d", size, maxAuthBody))
	}
	body := r.body[:size]
	if n, err := io.ReadFull(r.br, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return AuthMessage{}, r.fail(fmt.Errorf("tcpipe: authentication body cut short after %d of %d bytes: %w", n, size, err))
	}
	m := AuthMessage{Step: AuthStep(body[0])}
	rest := body[1:size:size]
	switch m.Step {
	case AuthChallenge:
		m.Nonce = rest
	case AuthProof:
		if len(rest) == NonceLen+MACLen {
			m.Nonce, m.MAC = rest[:NonceLen:NonceLen], rest[NonceLen:]
		} else {
			m.Nonce = rest // check reports the length
		}
	case AuthWelcome:
		m.MAC = rest
	case AuthRefusal:
		m.Reason = string(rest)
	}
	if err := m.check(); err != nil {
		return AuthMessage{}, r.fail(&wireError{msg: err.Error(), kind: ErrCorrupt})
	}
	return m, nil
}

// AuthMAC is the proof of the side that holds secret: HMAC-SHA256 under
// secret of a label naming the prover ("rtcp-tcpipe-v1 server" or
// "rtcp-tcpipe-v1 client"), the server's nonce, the client's nonce and
// binding (the TLS connection's exported key when the link is TLS, else
// empty). Compare proofs with hmac.Equal.
func AuthMAC(secret []byte, server bool, serverNonce, clientNonce, binding []byte) []byte {
	label := "rtcp-tcpipe-v1 client"
	if server {
		label = "rtcp-tcpipe-v1 server"
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(serverNonce)
	m.Write(clientNonce)
	m.Write(binding)
	return m.Sum(nil)
}
