package mihini

import (
	"errors"
	"net"
	"testing"

	"rtcp"
)

// TestDoorNames: a door with a name that is not one refuses to serve,
// and closes its listener.
func TestDoorNames(t *testing.T) {
	dp := new(rtcp.DiscoverPoint)
	defer dp.Close()
	for _, name := range []string{"a@b", "Plc-7", "plc 7", "plc.7", "x\ny", "mihini:"} {
		d := &Door{DP: dp, Name: name, Service: "127.0.0.1:502"}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Serve(l); !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("Serve of a door named %q = %v, want ErrBadName", name, err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("the door named %q left its listener open: %v", name, err)
		}
		if err := d.ListenAndServe("127.0.0.1:0"); !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("ListenAndServe of a door named %q = %v, want ErrBadName", name, err)
		}
	}
}
