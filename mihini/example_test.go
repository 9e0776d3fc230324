package mihini_test

import (
	"context"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"rtcp"
	"rtcp/mihini"
)

// The server side for one device, whose SSH server clients reach on port
// 2222 and whose web interface Go code reaches with an http.Client.
func ExampleServer() {
	srv := new(mihini.Server)
	defer srv.Close()
	go func() { log.Print(srv.ListenAndServe(":9100")) }() // the device dials this
	go func() { log.Print(srv.ListenAndServeClients(":2222", "127.0.0.1:22")) }()

	client := &http.Client{Transport: &http.Transport{DialContext: srv.DialContext}}
	resp, err := client.Get("http://127.0.0.1:80/status") // 127.0.0.1 as the device sees it
	if err != nil {
		log.Fatal(err) // mihini.ErrNoDevice until the device has dialled in
	}
	resp.Body.Close()
}

// The device side, dialling again whenever the link drops, until SIGTERM.
func ExampleDevice() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	d := &mihini.Device{Server: "server.example.com:9100", Reconnect: true}
	log.Print(d.DialAndServe(ctx))
}

// A DiscoverPoint that makes the Modbus server behind a Mihini device
// reachable as "plc-7": by rtcp.Dial, rtcp connect, or its port mode.
func ExampleDoor() {
	dp := new(rtcp.DiscoverPoint)
	defer dp.Close()
	door := &mihini.Door{DP: dp, Name: "plc-7", Service: "127.0.0.1:502"}
	defer door.Close()
	go func() { log.Print(door.ListenAndServe(":9100")) }()
	go func() { log.Print(dp.ListenAndServePort(":1502", "plc-7")) }()
	log.Fatal(dp.ListenAndServe(":9000"))
}
