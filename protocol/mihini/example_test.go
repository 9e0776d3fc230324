package mihini_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"rtcp/protocol/mihini"
)

func Example() {
	// The device side opens the link; the server side asks it to dial
	// 127.0.0.1:47002 for client 1 and sends that client's first bytes.
	var link []byte
	connect, err := mihini.AppendConnect(nil, "127.0.0.1", 47002)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range []mihini.Frame{
		{Command: mihini.Listen},
		{Command: mihini.Connect, Client: 1, Payload: connect},
		{Command: mihini.Data, Client: 1, Payload: []byte("hello")},
		{Command: mihini.Close, Client: 1},
	} {
		if link, err = mihini.AppendFrame(link, f); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("% x\n", link[:4])

	r := mihini.NewReader(bytes.NewReader(link))
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		switch f.Command {
		case mihini.Connect:
			host, port, err := mihini.ParseConnect(f.Payload)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%v: dial %s:%d\n", f, host, port)
		case mihini.Data:
			fmt.Printf("%v: %q\n", f, f.Payload)
		default:
			fmt.Println(f)
		}
	}
	// Output:
	// 00 00 04 00
	// LISTEN
	// CONNECT client 1 (13 bytes): dial 127.0.0.1:47002
	// DATA client 1 (5 bytes): "hello"
	// CLOSE client 1 (0 bytes)
}
