package rtcp_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"rtcp"
)

// Two DPs of a cluster: a server with links on the first, a client of the
// second, which carries the session to the first. Here the DPs share a
// MemoryRegistry in one process; DPs on different hosts share one on etcd
// (rtcp/etcdregistry, or "rtcp dp -etcd URLS -advertise ADDR").
func ExampleDiscoverPoint_cluster() {
	reg := new(rtcp.MemoryRegistry)
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		dp := &rtcp.DiscoverPoint{Registry: reg, Advertise: ln.Addr().String()}
		go dp.Serve(ln)
		defer dp.Close()
		addrs = append(addrs, ln.Addr().String())
	}

	l, err := rtcp.Listen(addrs[0], "printer-7")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello, %s", c.RemoteAddr().(*rtcp.Addr).Name)
		c.Close()
	}()

	d := rtcp.Dialer{Name: "laptop"}
	c, err := d.DialContext(context.Background(), addrs[1], "printer-7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	fmt.Println(string(b))
	// Output: hello, laptop
}
