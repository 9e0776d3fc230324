package c8y

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Fragment is the name of the operation this package handles: the JSON
// key of its fragment, and the fragment named in its status messages.
const Fragment = "c8y_RemoteAccessConnect"

// templateConnect is the SmartREST static template that carries the
// operation over MQTT.
const templateConnect = "530"

// Limits on what an operation may carry. Cumulocity documents none; these
// bound what is logged and sent back, far above real values (a key is a
// 36-byte UUID, an ID a short number).
const (
	maxKeyLen  = 1024
	maxHostLen = 255
	maxIDLen   = 256
)

// An Operation is a c8y_RemoteAccessConnect operation: a request to tunnel
// the WebSocket opened with Key to the TCP endpoint Host:Port.
type Operation struct {
	// ID is the operation's ID, from the JSON "id" field, that the REST API
	// updates the operation by. It is empty for SmartREST, which updates
	// operations by fragment.
	ID string

	// DeviceID is the ID of the device's managed object, from the JSON
	// "deviceId" field; empty for SmartREST.
	DeviceID string

	// ExternalID is the external ID (serial) of the device the operation
	// is for, from field 1 of a SmartREST 530 line; empty for JSON.
	ExternalID string

	// Host and Port are the endpoint on the device's network to tunnel
	// to. Host is a host name or an IP address without brackets, ready
	// for net.JoinHostPort; Port is 1 to 65535.
	Host string
	Port int

	// Key is the connection key: it authenticates the WebSocket, opened
	// at DevicePath(Key), and is good for one connection. It is 1 to 1024
	// bytes of UTF-8 without spaces or control characters.
	Key string
}

// ParseOperation parses a c8y_RemoteAccessConnect operation in either of
// the forms Cumulocity delivers it:
//
//   - a JSON operation (first byte '{'), as the REST and real-time APIs
//     send it, with "id" and "deviceId" and the fragment
//     "c8y_RemoteAccessConnect":{"hostname":"10.0.0.67","port":5900,"connectionKey":"..."};
//   - a SmartREST line (first byte a digit) of static template 530:
//     530,<externalId>,<hostname>,<port>,<connectionKey>.
//
// White space (line ends included, so a JSON operation may span lines)
// around line is ignored. The error wraps exactly one of:
//
//   - ErrNotRemoteAccess: an operation of another kind, a JSON object
//     without the fragment or another SmartREST template;
//   - ErrBadOperation: a c8y_RemoteAccessConnect operation that cannot be
//     used; the error says which field is wrong. The Operation returned
//     with it carries the ID and DeviceID of a JSON operation when those
//     could be read, so that the failure can be reported by ID;
//   - ErrNotOperation: no operation at all (empty, invalid JSON, neither
//     JSON nor SmartREST).
//
// SPEC.md lists what is tolerated.
func ParseOperation(line []byte) (Operation, error) {
	line = bytes.TrimPrefix(line, []byte("\uFEFF"))
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return Operation{}, newError(ErrNotOperation, "c8y: empty operation; want JSON or a SmartREST 530 line")
	case line[0] == '{':
		return parseJSON(line)
	case '0' <= line[0] && line[0] <= '9':
		return parseSmartREST(string(line))
	}
	return Operation{}, newError(ErrNotOperation,
		"c8y: operation %s is neither a JSON object nor a SmartREST line", quote(string(line)))
}

func parseJSON(b []byte) (Operation, error) {
	// Maps, not a struct: encoding/json matches struct fields without
	// regard to case, and the fragment's name must match exactly.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Operation{}, newError(ErrNotOperation, "c8y: operation is not valid JSON: %v", err)
	}
	raw, ok := top[Fragment]
	if !ok {
		var names []string
		for name := range top {
			if strings.HasPrefix(name, "c8y_") {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		has := "no c8y_ fragment"
		if len(names) > 0 {
			has = "fragments " + quote(strings.Join(names, ","))
		}
		return Operation{}, newError(ErrNotRemoteAccess, "c8y: JSON operation has %s, not %s", has, Fragment)
	}

	var op Operation
	var err error
	if op.ID, err = jsonID(top, "id"); err != nil {
		return Operation{}, err
	}
	if op.DeviceID, err = jsonID(top, "deviceId"); err != nil {
		return Operation{ID: op.ID}, err
	}
	// From here on a failure is reported against the operation's ID.
	ids := Operation{ID: op.ID, DeviceID: op.DeviceID}
	var frag map[string]json.RawMessage
	if kind := jsonKind(raw); kind != "an object" {
		return ids, newError(ErrBadOperation, "c8y: %s is %s, want an object", Fragment, kind)
	}
	if err := json.Unmarshal(raw, &frag); err != nil {
		return ids, newError(ErrBadOperation, "c8y: %s: %v", Fragment, err)
	}
	var host, key string
	if host, err = jsonString(frag, "hostname"); err != nil {
		return ids, err
	}
	if op.Host, err = checkHost(host); err != nil {
		return ids, err
	}
	rawPort, ok := frag["port"]
	if !ok {
		return ids, newError(ErrBadOperation, "c8y: %s has no port", Fragment)
	}
	port := string(rawPort)
	switch jsonKind(rawPort) {
	case "a number":
	case "a string":
		json.Unmarshal(rawPort, &port) // cannot fail: jsonKind saw a string in valid JSON
	default:
		return ids, newError(ErrBadOperation, "c8y: port is %s, want a number", jsonKind(rawPort))
	}
	if op.Port, err = checkPort(port); err != nil {
		return ids, err
	}
	if key, err = jsonString(frag, "connectionKey"); err != nil {
		return ids, err
	}
	if op.Key, err = checkKey(key); err != nil {
		return ids, err
	}
	return op, nil
}

// jsonKind names the JSON type of raw, a valid JSON value.
func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// jsonString returns the string field name of obj, which must be there.
func jsonString(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", newError(ErrBadOperation, "c8y: %s has no %s", Fragment, name)
	}
	if kind := jsonKind(raw); kind != "a string" {
		return "", newError(ErrBadOperation, "c8y: %s is %s, want a string", name, kind)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", newError(ErrBadOperation, "c8y: %s: %v", name, err)
	}
	return s, nil
}

// jsonID returns the ID field name of obj: a string, or a whole number,
// which some producers send; "" if absent or null.
func jsonID(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", nil
	}
	var s string
	switch kind := jsonKind(raw); kind {
	case "null":
		return "", nil
	case "a string":
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", newError(ErrBadOperation, "c8y: %s: %v", name, err)
		}
	case "a number":
		s = string(raw)
		if !isDigits(s) {
			return "", newError(ErrBadOperation, "c8y: %s %s is not a whole number", name, s)
		}
	default:
		return "", newError(ErrBadOperation, "c8y: %s is %s, want a string", name, kind)
	}
	if len(s) > maxIDLen {
		return "", newError(ErrBadOperation, "c8y: %s %s is longer than %d bytes", name, quote(s), maxIDLen)
	}
	if i, r := badRune(s, false); i >= 0 {
		return "", newError(ErrBadOperation, "c8y: %s %s has %s at byte %d", name, quote(s), describe(r), i)
	}
	return s, nil
}

func parseSmartREST(line string) (Operation, error) {
	// Look at the template first: another template's line is not ours to
	// judge, even if its CSV is bad.
	template, _, _ := strings.Cut(line, ",")
	if template != templateConnect {
		if isDigits(template) {
			return Operation{}, newError(ErrNotRemoteAccess,
				"c8y: SmartREST template %s, not %s (%s)", template, templateConnect, Fragment)
		}
		return Operation{}, newError(ErrNotOperation,
			"c8y: operation %s is neither a JSON object nor a SmartREST line", quote(line))
	}
	fields, err := splitCSV(line)
	if err != nil {
		return Operation{}, err
	}
	if len(fields) < 5 {
		return Operation{}, newError(ErrBadOperation,
			"c8y: SmartREST 530 line %s has %d fields, want 5: 530,externalId,hostname,port,connectionKey",
			quote(line), len(fields))
	}
	op := Operation{ExternalID: fields[1]}
	if len(op.ExternalID) > maxIDLen {
		return Operation{}, newError(ErrBadOperation, "c8y: externalId %s is longer than %d bytes", quote(op.ExternalID), maxIDLen)
	}
	if i, r := badRune(op.ExternalID, false); i >= 0 {
		return Operation{}, newError(ErrBadOperation, "c8y: externalId %s has %s at byte %d", quote(op.ExternalID), describe(r), i)
	}
	if op.Host, err = checkHost(fields[2]); err != nil {
		return Operation{}, err
	}
	if op.Port, err = checkPort(fields[3]); err != nil {
		return Operation{}, err
	}
	if op.Key, err = checkKey(fields[4]); err != nil {
		return Operation{}, err
	}
	return op, nil
}

// checkHost checks a hostname and removes the brackets around an IPv6
// address, which net.JoinHostPort would otherwise double.
func checkHost(h string) (string, error) {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	switch {
	case h == "":
		return "", newError(ErrBadOperation, "c8y: hostname is empty")
	case strings.ContainsAny(h, "[]"):
		return "", newError(ErrBadOperation, "c8y: hostname %s has a bracket; write an IPv6 address with or without one pair around it", quote(h))
	case len(h) > maxHostLen:
		return "", newError(ErrBadOperation, "c8y: hostname %s is longer than %d bytes", quote(h), maxHostLen)
	case strings.Count(h, ":") == 1:
		// An IPv6 address has at least two colons.
		return "", newError(ErrBadOperation, "c8y: hostname %s holds a port; the port belongs in the port field", quote(h))
	}
	if i, r := badRune(h, true); i >= 0 {
		return "", newError(ErrBadOperation, "c8y: hostname %s has %s at byte %d", quote(h), describe(r), i)
	}
	return h, nil
}

// checkPort parses a port given as decimal digits.
func checkPort(s string) (int, error) {
	if !isDigits(s) {
		return 0, newError(ErrBadOperation, "c8y: port %s is not a whole number from 1 to 65535", quote(s))
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, newError(ErrBadOperation, "c8y: port %s is out of range: want 1 to 65535", s)
	}
	return int(n), nil
}

func checkKey(k string) (string, error) {
	switch {
	case k == "":
		return "", newError(ErrBadOperation, "c8y: connectionKey is empty")
	case len(k) > maxKeyLen:
		return "", newError(ErrBadOperation, "c8y: connectionKey is %d bytes long, more than %d", len(k), maxKeyLen)
	}
	if i, r := badRune(k, true); i >= 0 {
		return "", newError(ErrBadOperation, "c8y: connectionKey has %s at byte %d", describe(r), i)
	}
	return k, nil
}

// validKey reports whether k is a key that ParseOperation can return.
func validKey(k string) bool {
	_, err := checkKey(k)
	return err == nil
}

// badRune returns the byte offset and rune of the first control
// character, invalid UTF-8 byte (as utf8.RuneError) or, if noSpace, white
// space in s; -1 if there is none.
func badRune(s string, noSpace bool) (int, rune) {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i, r
			}
		}
		if unicode.IsControl(r) || noSpace && unicode.IsSpace(r) {
			return i, r
		}
	}
	return -1, 0
}

func describe(r rune) string {
	switch {
	case r == utf8.RuneError:
		return "invalid UTF-8"
	case unicode.IsControl(r):
		return "control character " + strconv.QuoteRune(r)
	}
	return "white space " + strconv.QuoteRune(r)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
