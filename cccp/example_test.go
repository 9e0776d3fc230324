package cccp_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"rtcp"
	"rtcp/cccp"
)

// A DP with a CCCP proxy: devices register on :7000, the control API is on
// :7080, and proxies listen on ports 40000 to 40099.
func ExampleProxy() {
	dp := new(rtcp.DiscoverPoint)
	go dp.ListenAndServe(":9000")
	p := &cccp.Proxy{DP: dp, MinPort: 40000, MaxPort: 40099, Token: os.Getenv("CCCP_TOKEN")}
	go p.ListenAndServeDevices(":7000")
	log.Fatal(http.ListenAndServe(":7080", p))
}

// The Thing: register as CLD-123456 and carry sessions to a local Modbus
// server.
func ExampleDevice() {
	d := &cccp.Device{Proxy: "proxy.example.com:7000", Serial: "CLD-123456", To: "127.0.0.1:502"}
	log.Fatal(d.Run(context.Background()))
}
