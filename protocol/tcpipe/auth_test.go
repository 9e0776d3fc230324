package tcpipe

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
)

var (
	nonceA = bytes.Repeat([]byte{0xa1}, NonceLen)
	macB   = bytes.Repeat([]byte{0xb2}, MACLen)
)

// goldenAuth holds one message of every step with its bytes, built by hand
// from SPEC.md's layout: "rtcp", the body size big-endian, the step.
var goldenAuth = []struct {
	name string
	msg  AuthMessage
	wire string
}{
	{"challenge", AuthMessage{Step: AuthChallenge, Nonce: nonceA},
		"rtcp" + unhex("00 00 00 21 01") + string(nonceA)},
	{"proof", AuthMessage{Step: AuthProof, Nonce: nonceA, MAC: macB},
		"rtcp" + unhex("00 00 00 41 02") + string(nonceA) + string(macB)},
	{"welcome", AuthMessage{Step: AuthWelcome, MAC: macB},
		"rtcp" + unhex("00 00 00 21 03") + string(macB)},
	{"refusal", AuthMessage{Step: AuthRefusal, Reason: "wrong secret"},
		"rtcp" + unhex("00 00 00 0d 04") + "wrong secret"},
}

func TestAuthGolden(t *testing.T) {
	for _, g := range goldenAuth {
		t.Run(g.name, func(t *testing.T) {
			got, err := AppendAuth([]byte("x"), g.msg)
			if err != nil || string(got) != "x"+g.wire {
				t.Fatalf("AppendAuth = % x, %v; want x and\n% x", got, err, g.wire)
			}
			r := NewReader(strings.NewReader(g.wire + golden[0].wire))
			m, err := r.ReadAuth()
			if err != nil {
				t.Fatalf("ReadAuth: %v", err)
			}
			if m.Step != g.msg.Step || !bytes.Equal(m.Nonce, g.msg.Nonce) || !bytes.Equal(m.MAC, g.msg.MAC) || m.Reason != g.msg.Reason {
				t.Errorf("ReadAuth = %+v, want %+v", m, g.msg)
			}
			// The frames that follow the handshake read from the same Reader.
			if f, err := r.ReadFrame(); err != nil || f.Kind != Connect {
				t.Errorf("ReadFrame after the handshake = %v, %v; want the Connect", f, err)
			}
		})
	}
}

func TestReadAuthBad(t *testing.T) {
	tests := []struct {
		name string
		wire string
		is   error
		want string
	}{
		{"a tcpipe frame", golden[0].wire, ErrCorrupt,
			"tcpipe: the peer sent a tcpipe frame where an authentication message was due: it holds no shared secret"},
		{"other magic", "GET / HTTP/1.1\r\n", ErrCorrupt, "tcpipe: authentication header has magic 0x47455420"},
		{"size 0", "rtcp" + unhex("00 00 00 00"), ErrCorrupt, "tcpipe: authentication header has body size 0, want 1 to 201"},
		{"size too big", "rtcp" + unhex("00 00 10 00"), ErrCorrupt, "tcpipe: authentication header has body size 4096"},
		{"short proof", "rtcp" + unhex("00 00 00 21 02") + string(nonceA), ErrCorrupt,
			"tcpipe: authentication Proof carries 32 bytes; want a 32-byte nonce and a 32-byte proof"},
		{"unknown step", "rtcp" + unhex("00 00 00 01 09"), ErrCorrupt, "tcpipe: unknown authentication step 9"},
		{"empty refusal", "rtcp" + unhex("00 00 00 01 04"), ErrCorrupt, "tcpipe: authentication Refusal carries 0 bytes"},
		{"refusal not UTF-8", "rtcp" + unhex("00 00 00 02 04 ff"), ErrCorrupt, "tcpipe: authentication Refusal reason of 1 bytes"},
		{"cut header", "rtc", io.ErrUnexpectedEOF, "tcpipe: authentication header cut short after 3 of 8 bytes"},
		{"nothing", "", io.ErrUnexpectedEOF, "tcpipe: authentication header cut short after 0 of 8 bytes"},
		{"cut body", "rtcp" + unhex("00 00 00 21 01 00"), io.ErrUnexpectedEOF, "tcpipe: authentication body cut short after 2 of 33 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.wire))
			_, err := r.ReadAuth()
			checkErr(t, err, tt.is, tt.want)
			if _, again := r.ReadAuth(); again != err {
				t.Errorf("ReadAuth after %v = %v, want the same error", err, again)
			}
		})
	}
}

func TestAppendAuthInvalid(t *testing.T) {
	for _, m := range []AuthMessage{
		{Step: AuthChallenge},
		{Step: AuthProof, Nonce: nonceA},
		{Step: AuthWelcome, MAC: macB, Reason: "x"},
		{Step: AuthRefusal, Reason: strings.Repeat("x", MaxReasonLen+1)},
		{Step: 0},
	} {
		if got, err := AppendAuth(nil, m); !errors.Is(err, ErrInvalidFrame) || got != nil {
			t.Errorf("AppendAuth(%+v) = % x, %v; want an invalid frame", m, got, err)
		}
	}
}

// TestReadFrameAuthMagic checks that an instance with no secret that meets
// one with a secret says so.
func TestReadFrameAuthMagic(t *testing.T) {
	_, err := NewReader(strings.NewReader(goldenAuth[0].wire)).ReadFrame()
	checkErr(t, err, ErrCorrupt, "tcpipe: the partner sent an authentication message")
}

// TestAuthMAC checks the proof against an HMAC computed from SPEC.md's
// words, and that the two sides' proofs differ.
func TestAuthMAC(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	ns, nc := nonceA, bytes.Repeat([]byte{0xc3}, NonceLen)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("rtcp-tcpipe-v1 client"))
	m.Write(ns)
	m.Write(nc)
	if got := AuthMAC(secret, false, ns, nc, nil); !hmac.Equal(got, m.Sum(nil)) {
		t.Errorf("the client's proof is % x, want % x", got, m.Sum(nil))
	}
	if bytes.Equal(AuthMAC(secret, true, ns, nc, nil), AuthMAC(secret, false, ns, nc, nil)) {
		t.Error("the server's and the client's proofs are equal: one could be reflected as the other")
	}
	if bytes.Equal(AuthMAC(secret, true, ns, nc, nil), AuthMAC(secret, true, ns, nc, []byte("tls"))) {
		t.Error("the binding does not change the proof")
	}
}
