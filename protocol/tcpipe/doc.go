// Package tcpipe encodes and decodes the messages two tcpipe instances
// exchange over their partner link, which carries the TCP connections of
// user applications between the two hosts.
//
// Every frame is an 8-byte link header and a message body:
//
//	u32 magic = 21 | u32 body size | kind | local | port (little-endian) | data
//
// The magic and the size are big-endian; the port is little-endian, as the
// original wrote it from an x86 host. The port of the user connection is the
// session id, and the local flag tells the receiver which of its connections
// on that port the message is about. SPEC.md beside this file has the byte
// layout and every choice the original leaves open.
//
// The package is a pure codec: no goroutines, no network and no clocks.
// [AppendFrame] encodes a [Frame] onto a byte slice; a [Reader] decodes the
// frames of one partner link for its whole life, without allocating per
// frame. A wrong magic or size means the link is lost ([ErrCorrupt]); a well
// delimited frame that breaks the protocol is reported with
// [ErrInvalidFrame]. The decoder never panics, whatever the bytes.
//
// Two rtcp instances that share a secret first run a short handshake of
// [AuthMessage]s, which have their own magic ("rtcp"); [AuthMAC] computes
// each side's proof. An original tcpipe has no such handshake.
package tcpipe
