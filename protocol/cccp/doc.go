// Package cccp encodes and decodes the wire formats of the Telenor Connexion
// CCCP proxy: the registration line a device sends when it dials the
// registration port, and the query strings and JSON bodies of the proxy's
// HTTP control API (/on, /off, /status).
//
// A device registers by sending its serial followed by "\r"; everything it
// sends after that line is its data. [ReadSerial] reads the line from a
// [bufio.Reader] and leaves the data in the reader, so the caller keeps
// reading the device's byte stream from that same reader:
//
//	br := bufio.NewReader(conn)
//	serial, err := cccp.ReadSerial(br)
//	if err != nil {
//		conn.Close() // the device sent no valid registration line
//		return
//	}
//	// From here on, br (not conn) is the device's data stream.
//	io.Copy(client, br)
//
// The control API side parses queries with [ParseOnQuery] and
// [ParseSerialQuery] (every error wraps [ErrBadQuery]: answer 400 with an
// [ErrorResponse]) and answers with [OnResponse] or [StatusResponse].
//
// The package is a pure codec: it starts no goroutines, opens no connections
// and reads no clock. The exact formats, and every choice made where the
// CCCP documentation is silent, are written down in SPEC.md beside this file.
package cccp
