package rtcp_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"rtcp"
)

// A web service behind NAT: the server serves HTTP on its rtcp Listener,
// and the DP's HTTP door carries http://printer-7.<domain>/ to it, so any
// browser reaches it ("rtcp dp -http :80 -domain dp.example.com").
func ExampleDiscoverPoint_HTTPHandler() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	dp := new(rtcp.DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(ln) }()
	defer func() { dp.Close(); <-served }()

	// The server, behind NAT.
	l, err := rtcp.Listen(ln.Addr().String(), "printer-7")
	if err != nil {
		panic(err)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "printer-7 here; you asked for %s, from %s", r.Host, r.Header.Get("X-Forwarded-For"))
	})}
	go server.Serve(l)
	defer server.Close()

	// The DP's web door, under the domain localhost.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	door := dp.HTTPHandler("localhost")
	webServer := &http.Server{Handler: door}
	go webServer.Serve(web)
	defer door.CloseIdleConnections()
	defer webServer.Close()

	// A browser would ask for http://printer-7.localhost:PORT/.
	req, _ := http.NewRequest("GET", "http://"+web.Addr().String()+"/", nil)
	req.Host = "printer-7.localhost"
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// printer-7 here; you asked for printer-7.localhost, from 127.0.0.1
}

// HTTPS to a server behind NAT, which holds its own certificate: the
// DP's SNI door ("rtcp dp -https :443 -domain dp.example.com") passes TLS
// for printer-7.dp.example.com through to it untouched, and the server
// terminates TLS over its rtcp Listener.
func ExampleDiscoverPoint_ServeSNI() {
	cert, err := tls.LoadX509KeyPair("printer-7.dp.example.com.pem", "printer-7.dp.example.com-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	l, err := rtcp.Listen("dp.example.com:9000", "printer-7")
	if err != nil {
		log.Fatal(err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	log.Fatal(http.Serve(tl, http.FileServer(http.Dir("/srv/www"))))
}
