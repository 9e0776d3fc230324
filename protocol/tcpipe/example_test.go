package tcpipe_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"rtcp/protocol/tcpipe"
)

func Example() {
	// A user application connected to port 40000 of this instance: ask the
	// partner to connect to its target on 40000, then relay the first bytes.
	// The connection is local here, so the frames say Local: false, the
	// partner's point of view.
	var link []byte
	var err error
	for _, f := range []tcpipe.Frame{
		{Kind: tcpipe.Connect, Port: 40000},
		{Kind: tcpipe.Data, Port: 40000, Data: []byte("hello")},
		{Kind: tcpipe.Disconnect, Port: 40000},
	} {
		if link, err = tcpipe.AppendFrame(link, f); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("% x\n", link[:12])

	r := tcpipe.NewReader(bytes.NewReader(link))
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%v %q\n", f, f.Data)
	}
	// Output:
	// 00 00 00 15 00 00 00 04 01 00 40 9c
	// Connect port 40000 remote (0 bytes) ""
	// Data port 40000 remote (5 bytes) "hello"
	// Disconnect port 40000 remote (0 bytes) ""
}
