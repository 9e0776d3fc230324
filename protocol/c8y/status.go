package c8y

import (
	"strconv"
	"strings"
	"unicode"
)

// A Status is the state an agent reports for an operation it works on.
// Cumulocity sets a new operation PENDING; the agent moves it to
// EXECUTING when it starts, then to SUCCESSFUL once both the TCP
// connection and the WebSocket are up, or to FAILED with a reason.
type Status string

const (
	StatusExecuting  Status = "EXECUTING"
	StatusSuccessful Status = "SUCCESSFUL"
	StatusFailed     Status = "FAILED"
)

// SmartREST static templates that set the oldest operation of a fragment
// to a status.
var smartRESTTemplate = map[Status]string{
	StatusExecuting:  "501",
	StatusSuccessful: "503",
	StatusFailed:     "502",
}

// Templates of the Cumulocity C reference agent's own SmartREST template
// collection (cumulocity-agents-linux, srtemplate.txt; SmartREST 1.0 over
// HTTP) that set an operation's status by its ID.
const (
	templateStatusByID = "303" // 303,<id>,<status>: PUT /devicecontrol/operations/<id>
	templateFailedByID = "304" // 304,<id>,<reason>: the same, FAILED with a failureReason
)

// StatusUpdate is the JSON body of the REST request that sets an
// operation's status: PUT /devicecontrol/operations/<Operation.ID>.
type StatusUpdate struct {
	Status        Status `json:"status"`
	FailureReason string `json:"failureReason,omitempty"`
}

// SmartRESTStatus returns the SmartREST message, without line end, that
// sets the agent's oldest c8y_RemoteAccessConnect operation in st to
// status st:
//
//	501,c8y_RemoteAccessConnect
//	503,c8y_RemoteAccessConnect
//	502,c8y_RemoteAccessConnect,"<reason>"
//
// reason is used for StatusFailed only, on one line (control characters
// become spaces), quoted, with its quotes doubled; an empty reason is left
// out. SmartRESTStatus panics if st is not one of the Status constants.
func SmartRESTStatus(st Status, reason string) string {
	msg := mustTemplate(st) + "," + Fragment
	if st == StatusFailed {
		if reason = oneLine(reason); reason != "" {
			msg += "," + quoteCSV(reason)
		}
	}
	return msg
}

// SmartRESTStatusID returns the SmartREST message, without line end, that
// sets the operation with ID id (Operation.ID, from a JSON operation) to
// status st, in the form the Cumulocity C reference agent sends:
//
//	303,<id>,EXECUTING
//	303,<id>,SUCCESSFUL
//	304,<id>,"<reason>"
//
// These are templates of that agent's SmartREST 1.0 template collection
// (HTTP, with its X-Id), not MQTT static templates: on the MQTT topic s/us,
// 303 and 304 raise alarms. The id is written as it is if it is digits,
// as IDs are, and quoted otherwise; the reason is made one line and
// quoted as in SmartRESTStatus, and is always present in a 304, empty if
// need be. SmartRESTStatusID panics if st is not one of the Status
// constants.
func SmartRESTStatusID(id string, st Status, reason string) string {
	mustTemplate(st)
	field := id
	if !isDigits(id) {
		field = quoteCSV(oneLine(id))
	}
	if st == StatusFailed {
		return templateFailedByID + "," + field + "," + quoteCSV(oneLine(reason))
	}
	return templateStatusByID + "," + field + "," + string(st)
}

// StatusLine returns the line, without line end, that the agent prints on
// its standard output when operation key reaches status st:
//
//	EXECUTING <key>
//	SUCCESSFUL <key>
//	FAILED <key> <reason>
//
// Words are separated by one space. The key is one word: a key that
// ParseOperation returned is printed as it is; in any other, each space or
// control character is printed as '_', and an empty key as "_". The reason
// is used for StatusFailed only and is the rest of the line: control
// characters become spaces, spaces around it are dropped, and an empty
// reason is left out with its space. StatusLine panics if st is not one of
// the Status constants.
func StatusLine(st Status, key, reason string) string {
	mustTemplate(st)
	line := string(st) + " " + keyWord(key)
	if st == StatusFailed {
		if reason = oneLine(reason); reason != "" {
			line += " " + reason
		}
	}
	return line
}

// ParseStatusLine parses a line printed by StatusLine; a trailing "\n" or
// "\r\n" is ignored. It accepts exactly the lines StatusLine returns, and
// its errors wrap ErrBadStatusLine.
func ParseStatusLine(line string) (st Status, key, reason string, err error) {
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	word, rest, _ := strings.Cut(line, " ")
	st = Status(word)
	if _, ok := smartRESTTemplate[st]; !ok {
		return "", "", "", newError(ErrBadStatusLine,
			"c8y: status line %s does not start with EXECUTING, SUCCESSFUL or FAILED and a space", quote(line))
	}
	key, reason, hasReason := strings.Cut(rest, " ")
	switch {
	case keyWord(key) != key:
		return "", "", "", newError(ErrBadStatusLine, "c8y: status line %s has no valid key after %s", quote(line), st)
	case hasReason && st != StatusFailed:
		return "", "", "", newError(ErrBadStatusLine, "c8y: status line %s has text after the key; only FAILED has a reason", quote(line))
	case hasReason && oneLine(reason) != reason || hasReason && reason == "":
		return "", "", "", newError(ErrBadStatusLine,
			"c8y: status line %s has a reason that is empty, has control characters or starts or ends with space", quote(line))
	}
	return st, key, reason, nil
}

func mustTemplate(st Status) string {
	t, ok := smartRESTTemplate[st]
	if !ok {
		panic("c8y: unknown Status " + strconv.Quote(string(st)))
	}
	return t
}

// keyWord returns key as one word of a status line.
func keyWord(key string) string {
	if key == "" {
		return "_"
	}
	if validKey(key) {
		return key
	}
	key = strings.ToValidUTF8(key, "_")
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, key)
}

// oneLine makes reason fit on one line: valid UTF-8, control characters
// and line breaks turned into spaces, no spaces around it.
func oneLine(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	reason = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, reason)
	return strings.TrimSpace(reason)
}
