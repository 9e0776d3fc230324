// Command httpserver serves HTTP on an rtcp listener and fetches a page
// through it with net/http's own client, to show that rtcp.Listen and
// rtcp.DialContext drop in where net.Listen and net.Dialer.DialContext
// go. Run it with
//
//	go run ./examples/httpserver
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"rtcp"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	// A discover point in this process; in real use it runs elsewhere.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dp := new(rtcp.DiscoverPoint)
	dpDone := make(chan error, 1)
	go func() { dpDone <- dp.Serve(ln) }()
	defer func() {
		dp.Close()
		<-dpDone
	}()
	dpAddr := ln.Addr().String()

	// The server: an ordinary http.Server on an rtcp listener named "web".
	l, err := rtcp.Listen(dpAddr, "web")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s, from a server with no public address\n", r.RemoteAddr)
	})
	srv := &http.Server{Handler: mux}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(l) }()
	fmt.Fprintf(out, "serving HTTP as %s\n", l.Addr())

	// The client: an http.Transport that dials every host through the DP,
	// taking the host part of the URL as the server's name.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return rtcp.DialContext(ctx, dpAddr, host)
		},
	}
	client := &http.Client{Transport: tr}
	err = get(client, "http://web/hello", out)
	tr.CloseIdleConnections()

	if serr := srv.Shutdown(context.Background()); serr != nil && err == nil {
		err = serr
	}
	if serr := <-srvDone; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func get(client *http.Client, url string, out io.Writer) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "GET %s: %s\n%s", url, resp.Status, body)
	return nil
}
