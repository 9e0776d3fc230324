package c8y

import (
	"errors"
	"fmt"
)

// Errors returned by this package. The returned errors wrap these sentinels
// and add what was received and what is wrong with it, so test with
// [errors.Is] and show the error's text to people.
var (
	// ErrNotRemoteAccess means a well-formed operation that is not a
	// c8y_RemoteAccessConnect (another SmartREST template, or JSON without
	// that fragment). An agent that only tunnels ignores it or hands it on.
	ErrNotRemoteAccess = errors.New("c8y: not a c8y_RemoteAccessConnect operation")

	// ErrBadOperation means a c8y_RemoteAccessConnect operation (a
	// SmartREST 530 line, or a JSON object with that fragment) that cannot
	// be used: malformed CSV, a missing field, a port out of range, a key
	// that cannot be sent. The agent reports the operation FAILED with the
	// error's text.
	ErrBadOperation = errors.New("c8y: bad c8y_RemoteAccessConnect operation")

	// ErrNotOperation means input that is no operation at all: empty,
	// invalid JSON, or neither a JSON object nor a SmartREST line. Nothing
	// says which operation it was meant to be, so the agent reports no
	// status for it (a SmartREST 502 would fail another operation) and
	// logs it instead.
	ErrNotOperation = errors.New("c8y: not an operation")

	// ErrBadStatusLine means a line that is not in the agent's stdout
	// status format.
	ErrBadStatusLine = errors.New("c8y: bad status line")
)

// codecError is an error with a message of its own that still matches its
// sentinel under errors.Is.
type codecError struct {
	msg string
	err error
}

func (e *codecError) Error() string { return e.msg }
func (e *codecError) Unwrap() error { return e.err }

func newError(sentinel error, format string, args ...any) error {
	return &codecError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

// quote quotes s for an error message, cut to a length a log line can hold.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
