package tcpreset

import (
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestFINIsNotReset(t *testing.T) {
	a, b := pair(t)
	b.Close()
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after FIN: %v", err)
	}
	if WasReset(a) {
		t.Fatal("a FIN was taken for a reset")
	}
}

func TestFINAfterOurFIN(t *testing.T) {
	a, b := pair(t)
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
	a, b := pair(t)
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
