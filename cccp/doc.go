// Package cccp runs the Telenor Connexion CCCP proxy on rtcp: devices
// dial a registration port and name themselves with their serial, an HTTP
// control API starts a proxy port for a serial, and TCP clients that
// connect to that port reach the device.
//
// The proxy side is Proxy, which a DP runs beside its other doors:
//
//	p := &cccp.Proxy{DP: dp, MinPort: 40000, MaxPort: 40099, Token: token}
//	go p.ListenAndServeDevices(":7000")   // devices send "CLD-123456\r"
//	go http.ListenAndServe(":7080", p)   // GET /on?serial=CLD-123456 -> {"host":..,"port":40000}
//
// The device side is Device, which registers and carries the proxy
// connection to a local service, reconnecting with backoff:
//
//	d := &cccp.Device{Proxy: "proxy.example.com:7000", Serial: "CLD-123456", To: "127.0.0.1:502"}
//	err := d.Run(ctx)
//
// A registered device is a server at the DP (named "cccp:" + serial), so
// every session, from a proxy port or from rtcp.Dial, goes through the
// DP's one relay, and the proxy's rules (on or off, ip_whitelist, timeout)
// are checked for each. A serial belongs to the connection that registered
// it for as long as that connection lives: another registration of the
// same serial is refused, not a replacement. The DP's Policy governs the
// devices' names as any server's, with Proxy.Key as their key. The wire
// formats are package rtcp/protocol/cccp's and are written down in its
// SPEC.md, with the choices this implementation makes.
package cccp
