// Package c8y encodes and decodes the formats of the Cumulocity IoT remote
// access device agent: the c8y_RemoteAccessConnect operation that asks a
// device to open a tunnel, the status the agent reports back, and the
// WebSocket endpoint the tunnel runs over.
//
// An agent receives an operation either as JSON (the REST and real-time
// APIs) or as the SmartREST static template 530 (MQTT):
//
//	{"deviceId":"10200","c8y_RemoteAccessConnect":{"hostname":"10.0.0.67","port":5900,"connectionKey":"eb5e..."}}
//	530,DeviceSerial,10.0.0.67,5900,eb5e...
//
// [ParseOperation] takes either and returns an [Operation];
// [SplitOperations] splits a stream of them, JSON that spans lines
// included. The agent then dials Host:Port, opens a WebSocket to
// [DevicePath](Key) offering the [Subprotocol] "binary", and reports
// progress in SmartREST: [SmartRESTStatusID] by the operation's ID (303,
// 304, as the C reference agent does) when it has one, [SmartRESTStatus]
// by fragment (the MQTT static templates 501, 503, 502) otherwise; or, for
// people, [StatusLine] (EXECUTING, SUCCESSFUL, FAILED).
//
// The package is a pure codec: it starts no goroutines, opens no connections
// and reads no clock. The exact formats, our reading of the Cumulocity
// documentation and every choice made where it is silent are written down
// in SPEC.md beside this file.
package c8y
