package tcpipe_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"rtcp/tcpipe"
)

// The original's example: on host1, "tcpipe -s 50000 -p 40000,40001".
func ExampleServer() {
	srv := &tcpipe.Server{Ports: []uint16{40000, 40001}}
	defer srv.Close()
	log.Fatal(srv.ListenAndServe(":50000"))
}

// The original's example: on host2, "tcpipe -c host1:50000 -t appli2". A
// user application that connects to host1:40000 reaches appli2:40000.
func ExampleClient() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c := &tcpipe.Client{Server: "host1:50000", Target: "appli2"}
	log.Print(c.DialAndServe(ctx))
}
