// Package yamux encodes and decodes the frames of the yamux multiplexing
// wire (github.com/hashicorp/yamux, spec.md), so that rtcp can run its own
// session layer (internal/mux) over it and still talk to peers that run
// hashicorp's.
//
// Every frame is a 12-byte big-endian header, followed by a payload only
// for Data frames:
//
//	u8 version (0) | u8 type | u16 flags | u32 stream ID | u32 length
//
// The type is Data (the length is the payload's), WindowUpdate (the length
// is a window delta), Ping (an opaque value, echoed) or GoAway (an error
// code); the flags SYN, ACK, FIN and RST open, accept, half-close and reset
// a stream. SPEC.md beside this file has what we read from the spec and
// every choice it leaves open.
//
// The package is a pure codec: no goroutines, no network and no clocks.
// [Header.Append] encodes a header; [ParseHeader] decodes one; a [Reader]
// decodes the frames of one connection for its whole life without
// allocating per frame, and refuses Data frames longer than a cap. With
// [Reader.ReadFrameSplit] a caller takes the rest of a long Data frame
// itself, straight from the connection (rtcp splices it into another
// socket). The decoder never panics, whatever the bytes.
package yamux
