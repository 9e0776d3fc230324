package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

// runCLI runs the command line args as run does, with an empty stdin for
// connect, and returns its exit status and its one line of stderr.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var code int
	if args[0] == "connect" {
		code = finish(lookup("connect"), connect(t.Context(), args[1:], strings.NewReader(""), &stdout, &stderr), &stderr)
	} else {
		code = run(t.Context(), args, &stdout, &stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
	msg := stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
		t.Errorf("stderr is not one line: %q", msg)
	}
	return code, strings.TrimSuffix(msg, "\n")
}

// TestDurationFlagErrors: a duration flag given a bare number or no
// duration at all says what it wants, and -h still names its kind.
func TestDurationFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dp", "-listen", "127.0.0.1:0", "-grace", "10"},
			`rtcp dp: invalid value "10" for flag -grace: want a duration such as 10s: a number needs a unit (ms, s, m or h) (run 'rtcp dp -h' for usage)`},
		{[]string{"dp", "-listen", "127.0.0.1:0", "-grace", "soon"},
			`rtcp dp: invalid value "soon" for flag -grace: want a duration such as 10s, 1m30s or 500ms (run 'rtcp dp -h' for usage)`},
		{[]string{"dp", "-listen", "127.0.0.1:0", "-keepalive", "1.5"},
			`rtcp dp: invalid value "1.5" for flag -keepalive: want a duration such as 1.5s: a number needs a unit (ms, s, m or h) (run 'rtcp dp -h' for usage)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, msg := runCLI(t, tt.args...)
			if code != 2 || msg != tt.want {
				t.Errorf("exit status %d, stderr:\n\t%s\nwant 2 and\n\t%s", code, msg, tt.want)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"dp", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("rtcp dp -h: exit status %d, %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "-grace duration") {
		t.Errorf("rtcp dp -h does not say %q:\n%s", "-grace duration", stdout.String())
	}
}

// FuzzDurationFlag: a duration flag takes exactly what time.ParseDuration
// takes, and explains every refusal.
func FuzzDurationFlag(f *testing.F) {
	for _, s := range []string{"10s", "10", "1.5", "soon", "-1", "1m30s", "", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		d := fs.Duration("d", 0, "")
		restore := explainDurations(fs)
		err := fs.Lookup("d").Value.Set(s)
		restore()
		want, werr := time.ParseDuration(s)
		if (err == nil) != (werr == nil) || err == nil && *d != want {
			t.Fatalf("Set(%q) = %v, %v; time.ParseDuration: %v, %v", s, *d, err, want, werr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "want a duration such as ") {
			t.Fatalf("Set(%q): %v", s, err)
		}
		if _, ok := fs.Lookup("d").Value.(durationValue); ok {
			t.Fatal("the flag was not put back")
		}
	})
}
