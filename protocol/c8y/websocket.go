package c8y

import (
	"net/url"
	"strings"
)

// Subprotocol is the WebSocket subprotocol of the remote access endpoint.
// A device must offer it: Cumulocity always answers with it, and a client
// that did not offer it must fail such a handshake. Data travels in binary
// messages.
const Subprotocol = "binary"

const devicePathPrefix = "/service/remoteaccess/device/"

// DevicePath returns the path of the WebSocket endpoint a device opens for
// the operation with connection key key:
// /service/remoteaccess/device/<key>, with key path-escaped.
// The device dials wss://<tenant host> + DevicePath(key).
func DevicePath(key string) string {
	return devicePathPrefix + url.PathEscape(key)
}

// ParseDevicePath returns the connection key in path, the escaped path of
// a request (url.URL.EscapedPath), if path is a device endpoint as
// DevicePath makes them and the key is one ParseOperation accepts.
func ParseDevicePath(path string) (key string, ok bool) {
	escaped, ok := strings.CutPrefix(path, devicePathPrefix)
	if !ok || strings.Contains(escaped, "/") {
		return "", false
	}
	key, err := url.PathUnescape(escaped)
	if err != nil || !validKey(key) {
		return "", false
	}
	return key, true
}
