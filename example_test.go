package rtcp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"rtcp"
)

// A DP runs in process here; in real use it runs on a host with a public
// address ("rtcp dp -listen :9000"), and only the address changes.
func ExampleDiscoverPoint() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	dp := new(rtcp.DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(ln) }()

	// ... servers register with ln.Addr() and clients dial it ...

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("shutdown:", dp.Shutdown(ctx)) // lets open sessions finish
	fmt.Println("serve:", <-served)
	// Output:
	// shutdown: <nil>
	// serve: rtcp: discover point closed
}

// A server with no public address: Listen with a DP and a name instead of
// a local address, then Accept as from any net.Listener.
func ExampleListen() {
	dpAddr, stop := startDP()
	defer stop()

	l, err := rtcp.Listen(dpAddr, "printer-7")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	fmt.Println("network:", l.Addr().Network())
	fmt.Println("name:", l.Addr().(*rtcp.Addr).Name)

	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print("server got: ", line)
		io.WriteString(c, "done\n")
	}()

	c, err := rtcp.Dial(dpAddr, "printer-7")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "print page 1\n")
	answer, _ := bufio.NewReader(c).ReadString('\n')
	<-done
	fmt.Print("client got: ", answer)
	// Output:
	// network: rtcp
	// name: printer-7
	// server got: print page 1
	// client got: done
}

// A client reaches a server by its name through the DP. The session is a
// full net.Conn: here the client half-closes it and still reads the answer.
func ExampleDial() {
	dpAddr, stop := startDP()
	defer stop()
	l, err := rtcp.Listen(dpAddr, "upper")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c) // up to the client's CloseWrite
			c.Write([]byte(strings.ToUpper(string(b))))
			c.Close()
		}
	}()

	c, err := rtcp.Dial(dpAddr, "upper")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println("remote:", c.RemoteAddr().(*rtcp.Addr).Name)
	io.WriteString(c, "hello, rtcp")
	c.(*rtcp.Conn).CloseWrite()
	answer, err := io.ReadAll(c)
	fmt.Printf("%s %v\n", answer, err)

	// A name nobody serves: the DP refuses, and says why.
	_, err = rtcp.Dial(dpAddr, "nobody")
	var refused *rtcp.RefusedError
	if errors.As(err, &refused) {
		fmt.Println(refused.Reason)
	}
	// Output:
	// remote: upper
	// HELLO, RTCP <nil>
	// rtcp: no server named "nobody" is registered at this DP
}

// startDP runs a DiscoverPoint on a loopback port; stop closes it.
// A server that answers its sessions itself (ListenConfig.ManualAck) can
// refuse one with a reason, which the client's Dial returns: rtcp expose
// refuses so when the service behind it refuses.
func ExampleConn_Ack() {
	dpAddr, stop := startDP()
	defer stop()

	lc := rtcp.ListenConfig{ManualAck: true}
	l, err := lc.Listen(context.Background(), dpAddr, "db")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		// Accept with c.(*rtcp.Conn).Ack(nil), or the first Read or Write.
		c.(*rtcp.Conn).Ack(errors.New("the database is down for maintenance"))
	}()

	_, err = rtcp.Dial(dpAddr, "db")
	var re *rtcp.RefusedError
	if errors.As(err, &re) {
		fmt.Println("refused:", re.Reason)
	}
	// Output:
	// refused: rtcp: server "db" refused: the database is down for maintenance
}

func startDP() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	dp := new(rtcp.DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(ln) }()
	return ln.Addr().String(), func() {
		dp.Close()
		<-served
	}
}

// Join carries a server's sessions to a service on its own host, as "rtcp
// expose" does: the service needs to know nothing of rtcp. The client's
// half-close reaches the service, and the service's answer comes back.
func ExampleJoin() {
	dpAddr, stop := startDP()
	defer stop()

	// The service: it answers what it reads, in capitals, once its client
	// is done.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer svc.Close()
	go func() {
		c, err := svc.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write([]byte(strings.ToUpper(string(b))))
	}()

	l, err := rtcp.Listen(dpAddr, "upper")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	joined := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			joined <- err
			return
		}
		s, err := net.Dial("tcp", svc.Addr().String())
		if err != nil {
			c.Close()
			joined <- err
			return
		}
		_, _, err = rtcp.Join(c, s)
		joined <- err
	}()

	c, err := rtcp.Dial(dpAddr, "upper")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	c.(*rtcp.Conn).CloseWrite()
	answer, _ := io.ReadAll(c)
	fmt.Println("client got:", string(answer))
	fmt.Println("join:", <-joined)
	// Output:
	// client got: HELLO
	// join: <nil>
}
