package rtcp

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What a name may be. A name a server registers over the network is a
// DNS label, so that the web doors can route "<name>.<domain>" to it and
// a name reads the same in a log line, a URL, a metric and an etcd key.
// A seed door's device keeps the identifier its own wire gives it (a
// CCCP serial) behind a door prefix ("cccp:CLD-1"): such names are what
// ValidDoorName accepts, and only the program's doors register them.

// MaxNameLen is the longest name, in bytes: a DNS label's.
const MaxNameLen = 63

// MaxDoorIDLen is the longest identifier after the ':' of a door's name,
// in bytes.
const MaxDoorIDLen = 255

// ErrBadName matches every refusal of a name that is not one: a
// *NameError, the errors of Listen and Dial that wrap one, and a DP's
// refusal for that reason (a *RefusedError whose Reason starts
// "rtcp: bad name ").
var ErrBadName = errors.New("rtcp: bad name")

// badNamePrefix starts the text of every NameError, and so every refusal
// of a name on the wire (protocol/plan5/SPEC.md, "Names").
const badNamePrefix = "rtcp: bad name "

// nameRule says what a name is, for the errors.
const nameRule = "a name is a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"

// A NameError says why a name was refused, and what a name may be.
type NameError struct {
	Name   string // the name refused
	Reason string // what is wrong with it, and what to do
}

func (e *NameError) Error() string {
	return badNamePrefix + quoteName(e.Name) + ": " + e.Reason
}

// Is makes errors.Is(err, ErrBadName) true.
func (e *NameError) Is(target error) bool { return target == ErrBadName }

// quoteName quotes a name for an error, cut to a length a line can hold.
func quoteName(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// ValidName returns nil if name is a name a server may register at a DP
// over the network (Listen, ListenConfig, an indirect server's Aloha),
// and a *NameError that says why not otherwise. A name is a DNS label
// (RFC 1123): 1 to 63 bytes of the lower-case letters a-z, the digits 0-9
// and '-', that neither starts nor ends with '-'. These are the names the
// web doors reach as "<name>.<domain>".
//
// Upper case is refused, not folded: a name is compared byte for byte by
// the Policy, the registry and the metrics, and folding it at one door
// but not at another would give one server two spellings. DNS ignores
// case, so a web door folds the host it is asked for instead.
func ValidName(name string) error {
	if reason := labelFault(name); reason != "" {
		if strings.Contains(name, ":") && ValidDoorName(name) == nil {
			reason = "the form DOOR:ID is kept for the devices of a seed door (cccp:SERIAL), which the DP's own doors register; " + nameRule
		}
		return &NameError{Name: name, Reason: reason}
	}
	return nil
}

// ValidDoorName returns nil if name is a name that AddLink and AddLinkAs
// take and that a client may ask for (Dial, Dialer, ServePort, Relay, the
// rules of a Policy): a ValidName, or the name of a seed door's device,
// DOOR:ID. DOOR is a ValidName that says which door ("cccp"), and ID is
// the identifier the door's wire gives the device (a CCCP serial): 1 to
// MaxDoorIDLen bytes of UTF-8 text with no control characters. The web
// doors cannot reach such a name.
func ValidDoorName(name string) error {
	door, id, ok := strings.Cut(name, ":")
	if !ok {
		return ValidName(name)
	}
	if reason := labelFault(door); reason != "" {
		return &NameError{Name: name, Reason: "the door " + quoteName(door) + " before the ':' is not a name: " + reason}
	}
	if id == "" {
		return &NameError{Name: name, Reason: "nothing follows the ':'; a door's name is DOOR:ID, such as cccp:CLD-1"}
	}
	if len(id) > MaxDoorIDLen {
		return &NameError{Name: name, Reason: fmt.Sprintf("the ID after the ':' is %d bytes long; it has at most %d", len(id), MaxDoorIDLen)}
	}
	at := len(door) + 1
	for i, r := range id {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(id[i:]); size == 1 {
				return &NameError{Name: name, Reason: fmt.Sprintf("byte %d is not UTF-8; the ID of a door's name is UTF-8 text", at+i)}
			}
		}
		if unicode.IsControl(r) {
			return &NameError{Name: name, Reason: fmt.Sprintf("control character %U at byte %d; the ID of a door's name is printable text", r, at+i)}
		}
	}
	return nil
}

// labelFault says what keeps s from being a DNS label, or "" if it is one.
func labelFault(s string) string {
	switch {
	case s == "":
		return "it is empty; " + nameRule
	case len(s) > MaxNameLen:
		return fmt.Sprintf("it is %d bytes long; %s", len(s), nameRule)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i == 0:
			return "it starts with '-'; " + nameRule
		case c == '-' && i == len(s)-1:
			return "it ends with '-'; " + nameRule
		case c == '-':
		case 'A' <= c && c <= 'Z':
			if lower := strings.ToLower(s); labelFault(lower) == "" {
				return fmt.Sprintf("upper case %q at byte %d; names are lower case: use %q", c, i, lower)
			}
			return fmt.Sprintf("upper case %q at byte %d; %s", c, i, nameRule)
		case c < utf8.RuneSelf:
			return fmt.Sprintf("%q at byte %d; %s", c, i, nameRule)
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError {
				return fmt.Sprintf("byte %#x at byte %d is not UTF-8; %s", c, i, nameRule)
			}
			return fmt.Sprintf("%q at byte %d; %s (an internationalized name goes in as its xn-- form)", r, i, nameRule)
		}
	}
	return ""
}

// checkPattern returns an error matching ErrBadName if p, the Name of a
// NameRule, can match no name: a literal that is not a ValidDoorName, or
// a pattern with a character that no name has where it stands
// ("Printer-*", "pi.*"). The part after a ':' (a door's ID) may hold any
// text.
func checkPattern(p string) error {
	fail := func(reason string) error {
		return &patternError{fmt.Sprintf("rtcp: policy: rule %s can match no name: %s", quoteName(p), reason)}
	}
	if !strings.ContainsAny(p, `*?[\`) {
		var ne *NameError
		if err := ValidDoorName(p); errors.As(err, &ne) {
			return fail(ne.Reason)
		}
		return nil
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == ':':
			return nil // a door's ID follows
		case c == '*', c == '?':
		case c == '[':
			// A class: its contents are not checked.
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				return nil // path.Match reports it
			}
			i += j + 1
		case c == '\\' && i+1 < len(p) && p[i+1] == ':':
			return nil
		case c == '\\' && i+1 < len(p):
			i++
			if !nameByte(p[i]) {
				return fail(fmt.Sprintf("%q at byte %d is in no name; %s", p[i], i, nameRule))
			}
		case !nameByte(c):
			return fail(fmt.Sprintf("%q at byte %d is in no name; %s", c, i, nameRule))
		}
	}
	return nil
}

// patternError is checkPattern's error.
type patternError struct{ msg string }

func (e *patternError) Error() string        { return e.msg }
func (e *patternError) Is(target error) bool { return target == ErrBadName }

// nameByte reports whether c may appear in a name outside a door's ID.
func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
}

// refuseBadName counts and logs a name the DP refuses; the caller tells
// the peer.
func (dp *DiscoverPoint) refuseBadName(err error, remote net.Addr) {
	dp.refused(refusedBadName)
	dp.log().Info("rtcp: name refused", "remote", remote, "reason", err)
}

// checkLinkName is AddLink's and AddLinkAs's check of name.
func (dp *DiscoverPoint) checkLinkName(name string) error {
	if err := ValidDoorName(name); err != nil {
		dp.refused(refusedBadName)
		return err
	}
	return nil
}
