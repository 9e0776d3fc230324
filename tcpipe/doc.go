// Package tcpipe speaks tcpipe's partner protocol, wire for wire: two
// instances share one TCP connection, and user applications that connect
// to one instance are carried to the other, which connects to its target
// on the same port. It is useful for carrying several TCP connections
// through a firewall in one, in whichever direction the firewall allows.
//
// A [Server] (tcpipe -s PORT) accepts the link; a [Client] (tcpipe -c
// HOST:PORT) dials it and dials again for ever. Either may accept user
// applications on its ports and connect to a target. Both interoperate
// with the original tcpipe.
//
// The original's example, in Go, on host1 and host2:
//
//	srv := &tcpipe.Server{Ports: []uint16{40000, 40001}}
//	log.Fatal(srv.ListenAndServe(":50000"))
//
//	c := &tcpipe.Client{Server: "host1:50000", Target: "appli2"}
//	log.Fatal(c.DialAndServe(ctx))
//
// A user application that connects to host1:40000 is carried to
// appli2:40000. Each port carries one connection at a time; losing the
// link closes every user connection.
//
// The original trusts whoever connects: the first to reach the server is
// its partner. Here a partner reaches only the target's ports it is
// allowed (TargetPorts, by default Ports), a second partner is refused
// while the first is up, and two instances given the same Secret prove
// to each other that they hold it before the link is used; a partner
// that proves it replaces a link it lost. Without a Secret the wire is
// the original's.
//
// The frames are encoded by package rtcp/protocol/tcpipe; its SPEC.md has
// the wire and the choices the original leaves open. Connections run on
// rtcp's session layer and relay, like every other wire rtcp speaks.
package tcpipe
