// Command quickstart shows rtcp end to end in one process: a discover
// point, an indirect server named "printer-7" that registers with it, and
// an indirect client that reaches the server by name. Run it with
//
//	go run ./examples/quickstart
//
// In real use the three run on different machines: the DP on a host with
// a public address ("rtcp dp -listen :9000"), the server behind NAT, the
// client anywhere. Only the addresses change.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"rtcp"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	// The server and the client print from their own goroutines.
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}

	// 1. The discover point: the relay both sides dial out to.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dp := new(rtcp.DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(ln) }()
	dpAddr := ln.Addr().String()
	say("1. discover point listening on %s", dpAddr)

	// 2. The indirect server: rtcp.Listen instead of net.Listen. It dials
	// the DP and registers its name; it needs no public address.
	l, err := rtcp.Listen(dpAddr, "printer-7")
	if err != nil {
		dp.Close()
		return err
	}
	say("2. server registered as %q (its address: %s)", "printer-7", l.Addr())

	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept() // an ordinary net.Conn
			if err != nil {
				return // the listener was closed
			}
			wg.Go(func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					say("   server: read: %v", err)
					return
				}
				say("4. server got %q from %s", strings.TrimSpace(line), c.RemoteAddr())
				fmt.Fprintf(c, "printed: %s", line)
			})
		}
	})

	// 3. The indirect client: rtcp.Dial instead of net.Dial, with the
	// server's name instead of its address.
	err = client(dpAddr, say)

	// 6. Everything closes cleanly: the listener, its sessions, the DP.
	l.Close()
	wg.Wait()
	dp.Close()
	if serr := <-served; !errors.Is(serr, rtcp.ErrDiscoverPointClosed) {
		return serr
	}
	if err != nil {
		return err
	}
	say("6. closed the server and the discover point; done")
	return nil
}

func client(dpAddr string, say func(string, ...any)) error {
	c, err := rtcp.Dial(dpAddr, "printer-7")
	if err != nil {
		return err
	}
	defer c.Close()
	say("3. client connected to %s through the discover point", c.RemoteAddr())
	if _, err := io.WriteString(c, "hello from the client\n"); err != nil {
		return err
	}
	// The session is a full net.Conn: the client can half-close it and
	// still read the answer.
	if err := c.(*rtcp.Conn).CloseWrite(); err != nil {
		return err
	}
	answer, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	say("5. client got %q", strings.TrimSpace(string(answer)))
	return nil
}
