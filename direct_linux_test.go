package rtcp

import (
	"context"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"rtcp/internal/tcpreset"
)

// TestDirectKeepAliveOff: with KeepAlive negative (rtcp's heartbeats off)
// a direct connection still has TCP keepalive, as the raw leg on the
// relay has (Go's default): a direct path that goes silent fails in
// the end, as the relay's would, rather than leaving Read waiting for
// good. (The punch makes its connections without Go's default, and
// watchDirect sets rtcp's own only for a positive period.)
func TestDirectKeepAliveOff(t *testing.T) {
	addr := startDP(t, new(DiscoverPoint))
	l := listen(t, &ListenConfig{Transport: TransportYamux, Direct: true, KeepAlive: -1}, addr, "printer-7")
	served := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(served)
			return
		}
		io.Copy(c, c)
		c.(*Conn).CloseWrite() // echoCheck reads to the end
		served <- c.(*Conn)
	}()
	d := Dialer{Direct: true, KeepAlive: -1}
	c, err := d.DialContext(context.Background(), addr, "printer-7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := c.(*Conn)
	punched(rc)
	echoCheck(t, c, 1<<16) // moves the session
	sc := <-served
	if sc == nil {
		t.Fatal("the server accepted no session")
	}
	defer sc.Close()
	for side, conn := range map[string]*Conn{"client": rc, "server": sc} {
		if !conn.Direct() {
			t.Fatalf("the %s's session stays on the relay: %v", side, conn.DirectError())
		}
		tc := tcpreset.Under(conn.s.(*moveConn).direct.(*rawConn).Conn)
		if tc == nil {
			t.Fatalf("the %s's direct connection is no TCP connection", side)
		}
		raw, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on int
		var serr error
		raw.Control(func(fd uintptr) { on, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
		if serr != nil {
			t.Fatal(serr)
		}
		if on == 0 {
			t.Errorf("the %s's direct connection has no TCP keepalive", side)
		}
	}
}
