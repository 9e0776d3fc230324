package main

import (
	"errors"
	"testing"

	"rtcp"
)

// TestNameFlags: every flag that takes a name refuses a bad one at start,
// as a usage error that says what is wrong; connect and -port also take a
// seed door's name.
func TestNameFlags(t *testing.T) {
	t.Setenv(tokenEnv, "")
	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0").addr
	to := closedPort(t)
	rule := `a name is a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'`
	tests := []struct {
		name string
		args []string
		code int
		want string // the line on stderr, exactly
	}{
		{"expose upper case", []string{"expose", "-dp", dp, "-name", "Pi-7", "-to", to}, 2,
			`rtcp expose: -name "Pi-7": upper case 'P' at byte 0; names are lower case: use "pi-7" (run 'rtcp expose -h' for usage)`},
		{"expose @", []string{"expose", "-dp", dp, "-name", "a@b", "-to", to}, 2,
			`rtcp expose: -name "a@b": '@' at byte 1; ` + rule + ` (run 'rtcp expose -h' for usage)`},
		{"expose a door's name", []string{"expose", "-dp", dp, "-name", "cccp:CLD-1", "-to", to}, 2,
			`rtcp expose: -name "cccp:CLD-1": the form DOOR:ID is kept for the devices of a seed door (cccp:SERIAL), which the DP's own doors register; ` + rule + ` (run 'rtcp expose -h' for usage)`},
		{"connect newline", []string{"connect", "-stdio", "-dp", dp, "-name", "pi\n7"}, 2,
			`rtcp connect: -name "pi\n7": '\n' at byte 2; ` + rule + ` (run 'rtcp connect -h' for usage)`},
		{"connect a door's name", []string{"connect", "-stdio", "-dp", dp, "-name", "cccp:CLD-1"}, exitRefused,
			`rtcp connect: DP ` + dp + ` refused the session to "cccp:CLD-1": no server named "cccp:CLD-1" is registered at this DP`},
		{"dp -port", []string{"dp", "-listen", "127.0.0.1:0", "-port", "a/b=127.0.0.1:0"}, 2,
			`rtcp dp: invalid value "a/b=127.0.0.1:0" for flag -port: NAME "a/b": '/' at byte 1; ` + rule + ` (run 'rtcp dp -h' for usage)`},
		{"dp -mihini", []string{"dp", "-listen", "127.0.0.1:0", "-mihini", "PLC=127.0.0.1:0=127.0.0.1:502"}, 2,
			`rtcp dp: invalid value "PLC=127.0.0.1:0=127.0.0.1:502" for flag -mihini: NAME "PLC": upper case 'P' at byte 0; names are lower case: use "plc" (run 'rtcp dp -h' for usage)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if msg != tt.want {
				t.Errorf("stderr:\n\t%s\nwant\n\t%s", msg, tt.want)
			}
		})
	}
}

// TestConfigRuleNames: a -config rule that can match no name is refused
// when the file is read.
func TestConfigRuleNames(t *testing.T) {
	for _, name := range []string{"Printer-*", "pi.7", "a b", "cccp:"} {
		_, err := parseConfig([]byte(`{"anonymous_servers":true,"names":[{"name":"` + name + `"}]}`))
		if !errors.Is(err, rtcp.ErrBadName) {
			t.Errorf("a rule for %q: %v, want ErrBadName", name, err)
		}
	}
	for _, name := range []string{"printer-*", "pi-7", "cccp:*", "cccp:CLD-1"} {
		if _, err := parseConfig([]byte(`{"anonymous_servers":true,"names":[{"name":"` + name + `"}]}`)); err != nil {
			t.Errorf("a rule for %q: %v", name, err)
		}
	}
}

// TestExplainBadName: a name Listen or Dial refused before dialling is
// explained as the name, not as a DP that cannot be reached; one the DP
// refused, as the DP's refusal.
func TestExplainBadName(t *testing.T) {
	_, err := rtcp.Listen("127.0.0.1:1", "Pi-7")
	want := `name "Pi-7": upper case 'P' at byte 0; names are lower case: use "pi-7"`
	if got := explainDP(err, "127.0.0.1:1", `name "Pi-7"`, false); !errors.Is(got, rtcp.ErrBadName) || got.Error() != want {
		t.Errorf("explainDP(%v) = %q, want %q", err, got, want)
	}
	refused := &rtcp.RefusedError{Name: "a@b", DP: "127.0.0.1:1", Reason: rtcp.ValidName("a@b").Error()}
	want = `DP 127.0.0.1:1 refused name "a@b": bad name "a@b": '@' at byte 1; a name is a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'`
	if got := explainDP(refused, "127.0.0.1:1", `name "a@b"`, false); !errors.Is(got, rtcp.ErrBadName) || got.Error() != want {
		t.Errorf("explainDP(%v) = %q, want %q", refused, got, want)
	}
}
