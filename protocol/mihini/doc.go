// Package mihini encodes and decodes the frames of the Mihini agent's
// "TCP Remote Connection": the link a device dials out to a server so that
// clients of the server reach a service behind the device.
//
// Every frame is a 4-byte big-endian header and a payload:
//
//	u16 payload length | u8 command | u8 client id | payload
//
// The device opens the link with LISTEN (exactly 00 00 04 00). For each client
// that reaches the server, the server picks a client id and sends CONNECT with
// the address the device should dial; DATA then flows both ways and either side
// ends the session with CLOSE. SPEC.md beside this file has the byte layout and
// every choice the original leaves open.
//
// The package is a pure codec: no goroutines, no network and no clocks.
// [AppendFrame] encodes a [Frame] onto a byte slice; a [Reader] decodes the
// frames of one connection for its whole life, without allocating per frame.
// Errors about a frame's content wrap [ErrInvalidFrame]; the decoder never
// panics, whatever the bytes.
package mihini
