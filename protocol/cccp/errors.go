package cccp

import (
	"errors"
	"fmt"
)

// Errors returned by this package. The returned errors wrap these sentinels
// and add what was received and what the sender should do instead, so test
// with [errors.Is] and show the error's text to people.
var (
	// ErrEmptySerial means a registration line or a serial parameter
	// held no serial at all.
	ErrEmptySerial = errors.New("cccp: empty serial")

	// ErrSerialTooLong means a serial is longer than MaxSerialLen bytes.
	ErrSerialTooLong = fmt.Errorf("cccp: serial longer than %d bytes", MaxSerialLen)

	// ErrBadSerial means a serial holds a control character (a line feed
	// included) or is not valid UTF-8.
	ErrBadSerial = errors.New("cccp: serial is not printable UTF-8 text")

	// ErrBadQuery means a control API query string is malformed, misses
	// serial, repeats or misspells a parameter, or has a value out of range.
	// A server answers it with 400 and the error's text as the message.
	ErrBadQuery = errors.New("cccp: bad control API query")
)

// codecError is an error with a message of its own that still matches
// every sentinel it was built from under errors.Is. fmt.Errorf with several
// %w verbs would do the matching too, but would repeat each sentinel's text.
type codecError struct {
	msg  string
	errs []error
}

func (e *codecError) Error() string   { return e.msg }
func (e *codecError) Unwrap() []error { return e.errs }

func newError(errs []error, format string, args ...any) error {
	return &codecError{msg: fmt.Sprintf(format, args...), errs: errs}
}
