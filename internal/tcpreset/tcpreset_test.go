package tcpreset

import (
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"

	"rtcp/internal/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFINIsNotReset(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	b.Close()
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after FIN: %v", err)
	}
	if WasReset(a) {
		t.Fatal("a FIN was taken for a reset")
	}
}

func TestFINAfterOurFIN(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	a.CloseWrite()
	b.Read(make([]byte, 1))
	b.Close()
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after FIN: %v", err)
	}
	// WasReset may not be asked here: the socket is in CLOSE, handed over
	// to TIME_WAIT. This test documents why the callers track their FIN.
	t.Logf("WasReset after an orderly close begun here: %v", WasReset(a))
}

func TestResetTakenByWrite(t *testing.T) {
	a, b := flowtest.TCPPair(t)
	b.SetLinger(0)
	b.Close()
	// Write until the reset comes back; the read after it sees io.EOF.
	var werr error
	for werr == nil {
		_, werr = a.Write(make([]byte, 1024))
	}
	if !Is(werr) {
		t.Fatalf("write after the reset: %v", werr)
	}
	_, err := a.Read(make([]byte, 1))
	if err == io.EOF && !WasReset(a) {
		t.Fatal("a read after a reset returned io.EOF, and WasReset says it was clean")
	}
}

type unwrapper struct {
	net.Conn
	tc *net.TCPConn
}

func (u unwrapper) Unwrap() *net.TCPConn { return u.tc }

type layer struct{ net.Conn }

func (l layer) NetConn() net.Conn { return l.Conn }

type opaque struct{ net.Conn }

// TestOfAndUnder: Of sees through wrappers that keep the bytes, Under
// also through layers that change them.
func TestOfAndUnder(t *testing.T) {
	a, _ := flowtest.TCPPair(t)
	for _, tc := range []struct {
		name      string
		c         net.Conn
		of, under bool
	}{
		{"TCP", a, true, true},
		{"Unwrap", unwrapper{a, a}, true, true},
		{"NetConn", layer{a}, false, true},
		{"NetConn of Unwrap", layer{unwrapper{a, a}}, false, true},
		{"NetConn of nil", layer{nil}, false, false},
		{"opaque", opaque{a}, false, false},
	} {
		if got := Of(tc.c) == a; got != tc.of {
			t.Errorf("%s: Of finds the TCP connection: %v, want %v", tc.name, got, tc.of)
		}
		if got := Under(tc.c) == a; got != tc.under {
			t.Errorf("%s: Under finds the TCP connection: %v, want %v", tc.name, got, tc.under)
		}
	}
}

// TestSetReset: a connection set to reset is seen reset by its peer, and
// one set back ends with a FIN; a nil one is left alone.
func TestSetReset(t *testing.T) {
	SetReset(nil, true)
	for _, reset := range []bool{true, false} {
		a, b := flowtest.TCPPair(t)
		SetReset(a, true)
		if !reset {
			SetReset(a, false)
		}
		a.Close()
		_, err := b.Read(make([]byte, 1))
		if got := Is(err); got != reset {
			t.Errorf("SetReset(%v): the peer read %v", reset, err)
		}
	}
}

// TestResetThroughTLS: Reset of a TLS connection resets the TCP
// connection under it, and says no clean goodbye first: the peer's read
// fails. (A Close of the TLS connection, even of one set to reset, sends
// close_notify first, which the peer reads as a clean end before the
// reset comes: 200 runs in 200 on Linux.)
func TestResetThroughTLS(t *testing.T) {
	server, client := flowtest.TLSPair(t)
	Reset(server)
	if _, err := client.Read(make([]byte, 1)); !Is(err) {
		t.Errorf("the peer of a TLS connection Reset read %v, want a reset", err)
	}

	// No TCP connection under it: Reset closes it.
	p, q := net.Pipe()
	defer q.Close()
	Reset(p)
	if _, err := p.Write([]byte("x")); err != io.ErrClosedPipe {
		t.Errorf("a Write after Reset of a pipe: %v, want io.ErrClosedPipe", err)
	}
}
