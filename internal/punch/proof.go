package punch

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The proof's wire (SPEC.md): each side sends a hello, magic then version
// then a fresh nonce, and on reading the other's hello, its proof: an
// HMAC-SHA256 under the secret of a label, its own nonce, then the
// other's. Both sides send at once, so the proof takes one round trip.
const (
	magic      = "rtcp-punch"
	version    = 1
	nonceLen   = 32
	helloLen   = len(magic) + 1 + nonceLen
	proofLen   = sha256.Size
	proofLabel = "rtcp-punch proof\x00"
)

type nonce [nonceLen]byte

// Prove proves to the other end of conn that this side holds secret, and
// checks that the other end does too, before either hands a byte of conn to
// its caller. It ends when ctx does, and leaves conn without a deadline
// when it returns nil. The caller closes conn on an error, which wraps
// ErrProof if the other end answered but did not prove that it holds the
// secret. One that says nothing of the other end wraps what ended the
// exchange instead: the connection's I/O error if it was cut (its end, a
// reset), with ctx's error too if ctx ended first.
func Prove(ctx context.Context, conn net.Conn, secret []byte) error {
	var mine nonce
	rand.Read(mine[:])
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err := prove(conn, secret, mine)
	ended := !stop() // ctx ended, and may have cut the exchange
	var cut *cutError
	switch {
	case err == nil && !ended:
		return conn.SetDeadline(time.Time{})
	case err == nil:
		return fmt.Errorf("punch: the proof at %v was stopped: %w", conn.RemoteAddr(), ctx.Err())
	case errors.As(err, &cut) && ctx.Err() != nil:
		// The deadline ctx set on conn, or a cut as ctx ended.
		return fmt.Errorf("punch: the proof at %v was stopped (%w): %w", conn.RemoteAddr(), ctx.Err(), err)
	case cut != nil:
		return fmt.Errorf("punch: the connection at %v was cut before the proof: %w", conn.RemoteAddr(), err)
	}
	return fmt.Errorf("%w (at %v): %w", ErrProof, conn.RemoteAddr(), err)
}

// prove runs the exchange with a given nonce, so that the fuzz target can
// know what a valid answer is.
func prove(rw io.ReadWriter, secret []byte, mine nonce) error {
	hello := make([]byte, 0, helloLen)
	hello = append(hello, magic...)
	hello = append(hello, version)
	hello = append(hello, mine[:]...)
	if _, err := rw.Write(hello); err != nil {
		return &cutError{"send hello", err}
	}
	buf := make([]byte, helloLen)
	if n, err := io.ReadFull(rw, buf); err != nil {
		if perr := helloStart(buf[:n]); perr != nil {
			return perr // a stranger's bytes, then its end
		}
		return &cutError{"read the peer's hello", err}
	}
	theirs, err := parseHello(buf)
	if err != nil {
		return err
	}
	if theirs == mine {
		return errors.New("the peer's nonce is this side's own: a reflected hello")
	}
	if _, err := rw.Write(mac(secret, mine, theirs)); err != nil {
		return &cutError{"send proof", err}
	}
	got := buf[:proofLen]
	if _, err := io.ReadFull(rw, got); err != nil {
		return &cutError{"read the peer's proof", err}
	}
	if !hmac.Equal(got, mac(secret, theirs, mine)) {
		return errors.New("its proof does not match the secret: it is not the peer the rendezvous announced")
	}
	return nil
}

// parseHello decodes a hello of exactly helloLen bytes.
func parseHello(b []byte) (nonce, error) {
	var n nonce
	if len(b) != helloLen {
		return n, fmt.Errorf("a hello of %d bytes, want %d", len(b), helloLen)
	}
	if err := helloStart(b); err != nil {
		return n, err
	}
	copy(n[:], b[len(magic)+1:])
	return n, nil
}

// helloStart checks the first bytes of a hello, as many as b has: the
// magic, then the version.
func helloStart(b []byte) error {
	if k := min(len(b), len(magic)); string(b[:k]) != magic[:k] {
		return fmt.Errorf("its first bytes %q are not a punch hello: something else answered at that address", b[:k])
	}
	if len(b) > len(magic) && b[len(magic)] != version {
		return fmt.Errorf("it speaks punch version %d, this side %d: update the older side", b[len(magic)], version)
	}
	return nil
}

// mac is the proof of the side that sent from: a label, its nonce, then
// the receiver's. The order tells the two directions apart, so a proof
// reflected back at its sender does not match.
func mac(secret []byte, from, to nonce) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(proofLabel))
	h.Write(from[:])
	h.Write(to[:])
	return h.Sum(nil)
}

// cutError is a proof that ended because the connection did, before either
// side could tell whether the other holds the secret: not ErrProof, and
// Punch tries again.
type cutError struct {
	op  string
	err error
}

func (e *cutError) Error() string { return e.op + ": " + e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }
