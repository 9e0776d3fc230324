package main

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
)

// helpOf returns what "rtcp NAME -h" prints.
func helpOf(t *testing.T, name string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{name, "-h"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("rtcp %s -h: exit status %d, stderr %q", name, code, stderr.String())
	}
	return stdout.String()
}

var (
	helpHeading = regexp.MustCompile(`^([A-Z][^:]*):$`)
	helpFlag    = regexp.MustCompile(`^  -([\w-]+)`)
)

// helpFlags returns the flags -h lists under each heading, in order.
func helpFlags(help string) (headings []string, under map[string][]string) {
	under = make(map[string][]string)
	heading := ""
	for _, line := range strings.Split(help, "\n") {
		if m := helpHeading.FindStringSubmatch(line); m != nil && m[1] != "Examples" {
			heading = m[1]
			headings = append(headings, heading)
			continue
		}
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			under[heading] = append(under[heading], m[1])
		}
	}
	return headings, under
}

// TestHelpExamples: every command's -h ends its description with two or
// three examples of itself, and lists its flags.
func TestHelpExamples(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			help := helpOf(t, c.name)
			if !strings.Contains(help, "\nExamples") {
				t.Errorf("rtcp %s -h has no Examples:\n%s", c.name, help)
			}
			n := 0
			for _, line := range strings.Split(help, "\n") {
				if strings.HasPrefix(line, "\trtcp "+c.name+" ") || line == "\trtcp "+c.name || line == "\trtcp -"+c.name {
					n++
				}
			}
			if n < 2 || n > 3 {
				t.Errorf("rtcp %s -h has %d examples, want 2 or 3:\n%s", c.name, n, help)
			}
			headings, under := helpFlags(help)
			if c.name != "version" && len(under) == 0 {
				t.Errorf("rtcp %s -h lists no flags (headings %q)", c.name, headings)
			}
		})
	}
}

// TestHelpGroups: dp -h lists each flag under exactly one of the headings
// of flagGroups, none under "Other flags", and every flag a group names
// exists. A new flag of the DP fails here until it has a group.
func TestHelpGroups(t *testing.T) {
	for name, groups := range flagGroups {
		t.Run(name, func(t *testing.T) {
			headings, under := helpFlags(helpOf(t, name))
			var want []string
			for _, g := range groups {
				want = append(want, g.heading)
			}
			if !slicesEqual(headings, want) {
				t.Errorf("headings %q, want %q", headings, want)
			}
			seen := make(map[string]string)
			for _, h := range headings {
				for _, f := range under[h] {
					if prev, ok := seen[f]; ok {
						t.Errorf("-%s is under %q and %q", f, prev, h)
					}
					seen[f] = h
				}
			}
			if other := under["Other flags"]; len(other) > 0 {
				t.Errorf("flags in no group of flagGroups[%q]: %q", name, other)
			}
			for _, g := range groups {
				for _, f := range g.flags {
					if seen[f] != g.heading {
						t.Errorf("flagGroups[%q] names -%s under %q, which -h does not list there (no such flag?)", name, f, g.heading)
					}
				}
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// TestHelpHidden: an internal flag is in no -h, and still works.
func TestHelpHidden(t *testing.T) {
	n := 0
	for _, c := range commands {
		help := helpOf(t, c.name)
		_, under := helpFlags(help)
		for _, fl := range under {
			for _, f := range fl {
				if f == "child" || f == "to" && c.name == "bench" {
					t.Errorf("rtcp %s -h lists the internal flag -%s", c.name, f)
				}
			}
		}
		n += strings.Count(help, internalUsage)
	}
	if n != 0 {
		t.Errorf("-h shows %d internal usages", n)
	}
	// bench's -child is parsed: the child says what it lacks, not that
	// the flag is unknown.
	var stdout, stderr bytes.Buffer
	err := runBench(t.Context(), []string{"-child", "relay"}, &stdout, &stderr)
	var ue *usageError
	if err == nil || errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		t.Errorf("rtcp bench -child relay (without -to): %v, want the child's own error", err)
	}
}

// TestHelpFlagsKeepDefaults: a flag given before -h does not change the
// default -h shows.
func TestHelpFlagsKeepDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"dp", "-grace", "3s", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d, %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "(default 10s)") || strings.Contains(stdout.String(), "(default 3s)") {
		t.Errorf("rtcp dp -grace 3s -h shows the wrong default of -grace:\n%s", stdout.String())
	}
}
