package cccp_test

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"rtcp/protocol/cccp"
)

func ExampleReadSerial() {
	// What a device sends: its registration line, then its first data,
	// possibly in the same TCP segment.
	conn := strings.NewReader("CLD-123456\r\nhello, client")

	br := bufio.NewReader(conn)
	serial, err := cccp.ReadSerial(br)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The device's data continues in br, not in conn.
	data, _ := io.ReadAll(br)
	fmt.Printf("serial %q, data %q\n", serial, data)
	// Output: serial "CLD-123456", data "hello, client"
}

func ExampleParseOnQuery() {
	q, err := cccp.ParseOnQuery("serial=CLD-123456&persistent=true&ip_whitelist=10.0.0.0/8,192.0.2.7&timeout=30")
	if err != nil {
		fmt.Println(err) // a server answers 400 with this text
		return
	}
	fmt.Println(q.Serial, q.Persistent, q.IPWhitelist, q.Timeout)

	_, err = cccp.ParseOnQuery("serial=CLD-123456&persistent=yes")
	fmt.Println(err)
	// Output:
	// CLD-123456 true [10.0.0.0/8 192.0.2.7/32] 30s
	// cccp: bad query: persistent="yes" is neither true nor false
}
