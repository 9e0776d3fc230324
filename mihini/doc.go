// Package mihini speaks the Mihini agent's "TCP Remote Connection", wire
// for wire: a device with a private address dials a server, and the server
// carries clients to a service behind the device over that one link.
//
// The two roles are [Server] (the original's ServerSideApp: it accepts the
// device link, listens for clients and sends a CONNECT for each) and
// [Device] (the DeviceSideApp: it dials the server, sends LISTEN, and dials
// the service for each CONNECT). Either end interoperates with the
// original. A [Door] is the server side for a [rtcp.DiscoverPoint]: it
// makes the device reachable by name, so that rtcp.Dial and the DP's port
// mode reach the service behind it; the DP's Policy governs that name as
// any server's, with Door.Key as the device's key.
//
// A server for one device, whose SSH server clients reach on port 2222:
//
//	srv := new(mihini.Server)
//	go srv.ListenAndServe(":9100")                         // the device dials this
//	go srv.ListenAndServeClients(":2222", "127.0.0.1:22")  // CONNECT 127.0.0.1:22
//	defer srv.Close()
//
// and the device:
//
//	d := &mihini.Device{Server: "server.example.com:9100", Reconnect: true}
//	log.Fatal(d.DialAndServe(ctx))
//
// The frames are encoded by package rtcp/protocol/mihini; its SPEC.md has
// the wire and every choice the original leaves open (the close
// handshake, client ids, DATA before CONNECT). Sessions run on rtcp's
// session layer and relay, like every other wire rtcp speaks.
package mihini
