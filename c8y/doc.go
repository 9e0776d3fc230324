// Package c8y speaks Cumulocity IoT remote access ("Cloud Remote
// Access"), both sides of it.
//
// The device side is the Agent: given a c8y_RemoteAccessConnect operation
// (JSON, or the SmartREST line 530,<externalId>,<host>,<port>,<key>), it
// reports EXECUTING, dials the TCP endpoint host:port and the WebSocket
// <URL>/service/remoteaccess/device/<key> at the same time (Authorization
// Basic or Bearer, subprotocol "binary"), reports SUCCESSFUL and copies
// bytes both ways, or reports FAILED with the reason. It reports in
// SmartREST (303/304 by the operation's ID, as the C reference agent does,
// or 501/503/502), or in readable lines with StatusText:
//
//	a := &c8y.Agent{URL: "https://t123.cumulocity.com", User: "t123/device", Password: pw, Status: os.Stdout}
//	err := a.Serve(ctx, os.Stdin) // JSON operations (any layout) or 530 lines
//
// The cloud side is the Server, an http.Handler that a DP runs so that the
// same agent works with a self-hosted relay: it issues single-use,
// expiring connection keys, takes the device's WebSocket for a key, and
// pairs it with the first client that knows the key, through the DP (a
// client WebSocket, rtcp.Dial, or a port-mode port):
//
//	srv := &c8y.Server{DP: dp, Token: token}
//	http.Handle("/service/remoteaccess/", srv)
//	k, err := srv.NewKey("pi-7-ssh", 0) // or POST /service/remoteaccess/keys
//
// The device endpoint takes the agents the cloud takes, the C reference
// agent's non-standard opening handshake included, and writes it messages
// under 32768 bytes, which that agent can read. A key's name obeys the
// DP's Policy in force, one set with SetPolicy included, as any server's
// name does (the Server registers it with AddLinkAs, as Server.Key or as
// an anonymous server), the keys held at once are bounded by MaxKeys, and
// Stats counts what was refused and why.
// Logs never show a key whole.
//
// The formats (operations, status lines, paths) are package
// rtcp/protocol/c8y's and are written down in its SPEC.md; the tunnel's
// bytes travel as binary WebSocket messages through package rtcp/wsconn,
// and every byte is joined by the same relay as the rest of rtcp.
package c8y
