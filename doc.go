// Package rtcp is net.Listen and net.Dial for a TCP server that has no
// public address: a device behind NAT, a laptop on a mobile network, a
// service in a private network that may dial out but not be dialled.
//
// The server calls [Listen] with the address of a discover point and a
// name instead of a local address; the client calls [Dial] with the same
// discover point and the server's name instead of the server's address.
// Both dial out to the discover point, which carries the bytes between
// them. What they get back is an ordinary [net.Listener] and [net.Conn],
// so anything that serves or dials TCP (net/http, gRPC, an SSH library)
// runs over rtcp unchanged. The discover point itself is a Go type,
// [DiscoverPoint], that a program can run in process or that the rtcp
// command runs ("rtcp dp").
//
// # Glossary
//
//   - Discover point (DP): the relay with a public address. Servers
//     register their names with it; clients reach servers by name through
//     it. See [DiscoverPoint].
//   - Indirect server (IS): a server that is reached through a DP. It keeps
//     one or more links to the DP under its name and accepts the sessions
//     clients open. [Listen] with a name; [ListenConfig] for the options.
//   - Indirect client (IC): a client that reaches an indirect server by its
//     name through a DP. [Dial] with a name; [Dialer] for the options.
//   - Direct server, direct client: plain TCP, with no DP. [Listen] and
//     [Dial] with an empty name are exactly net.Listen("tcp", addr) and
//     net.Dial("tcp", addr), so one code path serves both cases.
//   - Name: what a server is known by at a DP, such as "printer-7": a DNS
//     label, 1 to 63 of a-z, 0-9 and '-', not starting or ending with
//     '-' ([ValidName]), so that the web doors can route
//     "<name>.<domain>" to it. Upper case is refused, not folded. The
//     devices of the seed doors keep their own identifiers behind the
//     door's prefix ("cccp:CLD-1", [ValidDoorName]): only the DP's doors
//     register such names, clients may ask for them, and the web doors do
//     not reach them. Every entry point refuses any other name with an
//     error matching [ErrBadName], the DP with a refusal that says why.
//     One server holds a name at a time; another server asking for it is
//     refused with [ErrNameTaken]. Addresses are written "name@host:port"
//     (see [Addr]).
//   - Link: a long-lived connection from an indirect server to the DP that
//     carries that server's sessions. A server may keep a pool of them
//     ([ListenConfig.PoolSize]); the DP spreads sessions over them. When a
//     link is lost the server dials again; [ListenConfig.OnEvent] reports
//     each link up and down, and the name registered or lost to another
//     server. See [Link].
//   - Session: one client's connection to a server through the DP, what
//     [Dial] returns and [Listener.Accept] hands out: a [*Conn], a full
//     net.Conn with deadlines, and CloseWrite for half-close. A server may
//     answer each session itself ([ListenConfig.ManualAck], [Conn.Ack]),
//     to refuse it with a reason the client's Dial returns.
//   - Cluster: several DPs that share a [Registry] (package
//     rtcp/etcdregistry keeps one on etcd), each with its
//     [DiscoverPoint.Advertise] address. A name has one owner across the
//     cluster, a client may ask any DP for any name (the DP carries the
//     session to a DP that holds a link of it), and a server may keep
//     links on several DPs: [ListenConfig.Listen] and [Dialer.DialContext]
//     take a comma-separated list of DPs.
//   - Transport: how sessions travel. [TransportJSON], the zero value, is
//     the Plan5 protocol of the seed (JSON lines, payload in base64), which
//     plain peers speak; [TransportYamux] multiplexes a server's sessions
//     over yamux links and gives a client raw bytes after its handshake;
//     [TransportTCP] gives every session a TCP connection of its own that
//     the DP joins to the client without looking at the bytes (the kernel
//     splices them): the fastest. The server keeps a few of those ready at
//     the DP ([ListenConfig.Spares]), so that a session costs one round
//     trip between server and DP, as on the other transports, rather than
//     a dial and two.
//   - Direct session: a session whose client and server both asked
//     ([Dialer.Direct], [ListenConfig.Direct]) starts on the DP's relay
//     and moves to a TCP connection between them, through their NATs,
//     when one comes up; the DP introduces them ([DiscoverPoint.NoDirect]
//     refuses to). [Conn.Direct] says whether it has moved. The direct
//     path is not encrypted. See docs/direct.md.
//
// # An end-to-end example
//
// A DP runs somewhere with a public address:
//
//	dp := new(rtcp.DiscoverPoint)
//	log.Fatal(dp.ListenAndServe(":9000"))
//
// The server, behind NAT, serves HTTP under the name "printer-7":
//
//	l, err := rtcp.Listen("dp.example.com:9000", "printer-7")
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.Serve(l, handler))
//
// A client anywhere reaches it by name:
//
//	c, err := rtcp.Dial("dp.example.com:9000", "printer-7")
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close()
//
// # Flow control
//
// Sessions that share a link never stall each other. Toward a peer that
// does flow control (rtcp itself, on every transport) each session's
// window starts at 256 KiB and grows, up to 256 MiB, while the round trip
// rather than its reader holds the sender back, so one session fills a
// long path; a reader that falls behind never grows its window, and
// growth is bounded by [DiscoverPoint.WindowMemory] and
// [ListenConfig.WindowMemory]. A peer without flow control (Plan5's own
// code, the other seeds' originals) is held back by TCP: when one of its
// sessions has 256 KiB waiting for a slow reader, its link is not read
// until the reader takes some, and [DiscoverPoint.StallTimeout] bounds
// how long that session may hold up the others on the link.
//
// The wire codec is in protocol/plan5; the command in
// cmd/rtcp runs a DP, exposes a local TCP service under a name, and carries
// local TCP connections to a name.
package rtcp
