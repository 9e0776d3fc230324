package rtcp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"rtcp"
)

// A DP that admits only holders of its keys and gives the names
// "printer-*" to the key "alice". Add TLSConfig on all three sides to
// run it all inside TLS.
func ExamplePolicy() {
	alice := &rtcp.Credential{Key: "alice", Secret: []byte("a3f9c2e1d4b5a6978812fe3c4d5e6f70")}
	bob := &rtcp.Credential{Key: "bob", Secret: []byte("0f1e2d3c4b5a69788796a5b4c3d2e1f0")}
	dp := &rtcp.DiscoverPoint{Policy: &rtcp.Policy{
		Keys:  map[string][]byte{alice.Key: alice.Secret, bob.Key: bob.Secret},
		Names: []rtcp.NameRule{{Name: "printer-*", Owners: []string{"alice"}}},
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go dp.Serve(ln)
	defer dp.Close()
	addr := ln.Addr().String()

	// bob may use the DP, but not register alice's names.
	_, err = (&rtcp.ListenConfig{Credential: bob}).Listen(context.Background(), addr, "printer-7")
	fmt.Println("bob:", errors.Is(err, rtcp.ErrUnauthorized))

	l, err := (&rtcp.ListenConfig{Credential: alice}).Listen(context.Background(), addr, "printer-7")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "ready\n")
		c.Close()
	}()

	// A client without a key is turned away; bob's key lets him in.
	_, err = rtcp.Dial(addr, "printer-7")
	fmt.Println("no key:", errors.Is(err, rtcp.ErrUnauthorized))
	c, err := (&rtcp.Dialer{Credential: bob}).DialContext(context.Background(), addr, "printer-7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	fmt.Printf("printer-7 says %s", b)
	// Output:
	// bob: true
	// no key: true
	// printer-7 says ready
}
