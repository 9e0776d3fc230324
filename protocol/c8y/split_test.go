package c8y

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// scan splits in with SplitOperations through a bufio.Scanner that reads
// r, and returns the tokens.
func scan(t testing.TB, in []byte, oneByte bool, max int) ([]string, error) {
	t.Helper()
	var r = bytes.NewReader(in)
	sc := bufio.NewScanner(r)
	if oneByte {
		sc = bufio.NewScanner(iotest.OneByteReader(r))
	}
	sc.Buffer(make([]byte, 16), max)
	sc.Split(SplitOperations)
	var tokens []string
	for sc.Scan() {
		tokens = append(tokens, sc.Text())
	}
	return tokens, sc.Err()
}

func TestSplitOperations(t *testing.T) {
	compact := `{"id":"7","c8y_RemoteAccessConnect":{"hostname":"h","port":22,"connectionKey":"k"}}`
	tricky := `{"description":"a } and a { and \"}\" in a string","c8y_RemoteAccessConnect":{"hostname":"h","port":1,"connectionKey":"k"}}`
	tests := []struct {
		name, in string
		want     []string
	}{
		{"the seed's pretty-printed JSON", seedOperation + "\n", []string{seedOperation}},
		{"pretty JSON without a line end", seedOperation, []string{seedOperation}},
		{"CRLF pretty JSON", strings.ReplaceAll(seedOperation, "\n", "\r\n") + "\r\n",
			[]string{strings.ReplaceAll(seedOperation, "\n", "\r\n")}},
		{"SmartREST lines", "530,d,h,22,k\r\n510,d\n\n  \n530,d,h,23,k",
			[]string{"530,d,h,22,k", "510,d", "530,d,h,23,k"}},
		{"mixed", "530,d,h,22,k\n" + seedOperation + "\n" + compact + "\n",
			[]string{"530,d,h,22,k", seedOperation, compact}},
		{"two objects on a line", compact + " " + compact + "\n", []string{compact, compact}},
		{"an object then a line on its line", compact + "530,d,h,1,k\n", []string{compact, "530,d,h,1,k"}},
		{"braces in strings", tricky + "\n", []string{tricky}},
		{"byte order mark", "\uFEFF" + seedOperation + "\n\uFEFF530,d,h,1,k", []string{seedOperation, "530,d,h,1,k"}},
		{"unclosed object at the end", `{"a":"}`, []string{`{"a":"}`}},
		{"a stray brace is a line", "}\n530,d,h,1,k\n", []string{"}", "530,d,h,1,k"}},
		{"only white space", " \r\n\t\n", nil},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				got, err := scan(t, []byte(tt.in), oneByte, 1<<16)
				if err != nil {
					t.Fatalf("oneByte=%v: %v", oneByte, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Fatalf("oneByte=%v: tokens (-want +got):\n%s", oneByte, diff)
				}
			}
		})
	}
	// Each token of the seed's stream is the operation.
	got, _ := scan(t, []byte(seedOperation+"\n"+seedOperation), false, 1<<16)
	for _, tok := range got {
		if op, err := ParseOperation([]byte(tok)); err != nil || op.Key != seedKey {
			t.Errorf("ParseOperation(%q) = %+v, %v", tok, op, err)
		}
	}
}

// An object that is never closed is read only up to the Scanner's limit.
func TestSplitOperationsTooLong(t *testing.T) {
	in := "{" + strings.Repeat(`"a":1,`+"\n", 100) + "\n530,d,h,1,k\n"
	if _, err := scan(t, []byte(in), false, 256); !errors.Is(err, bufio.ErrTooLong) {
		t.Fatalf("scan = %v, want bufio.ErrTooLong", err)
	}
}

func FuzzSplitOperations(f *testing.F) {
	for _, s := range []string{
		seedOperation, "530,d,h,22,k\r\n510,d\n", `{"a":"}\"{"}{"b":{}}` + "\n}", "\uFEFF\uFEFF {", "\xef\xbb", "\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, err := scan(t, in, false, len(in)+16)
		if err != nil {
			t.Fatalf("scan(%q): %v", in, err)
		}
		// Reading a byte at a time splits the same way. (A split function
		// looks at all it has been given on each call, so this is
		// quadratic: only for inputs of up to 1 KB.)
		if len(in) <= 1024 {
			bytewise, err := scan(t, in, true, len(in)+16)
			if err != nil || !slicesEqual(whole, bytewise) {
				t.Fatalf("scan(%q) = %q whole, %q (%v) a byte at a time", in, whole, bytewise, err)
			}
		}
		// The tokens are the input, in order, less the white space and
		// byte order marks before them and the line end after a line.
		var direct []string
		for off := 0; off < len(in); {
			data := in[off:]
			adv, tok, err := SplitOperations(data, true)
			if err != nil || adv <= 0 || adv > len(data) {
				t.Fatalf("SplitOperations(%q, true) = %d, %q, %v", data, adv, tok, err)
			}
			if tok == nil {
				if skipped := bytes.ReplaceAll(data[:adv], bom, nil); len(bytes.TrimSpace(skipped)) != 0 || adv != len(data) {
					t.Fatalf("SplitOperations(%q, true) skipped %q and gave no token", data, data[:adv])
				}
				break
			}
			at := cap(data) - cap(tok) // tok is a slice of data
			if skipped := bytes.ReplaceAll(data[:at], bom, nil); len(bytes.TrimSpace(skipped)) != 0 {
				t.Fatalf("SplitOperations(%q): %q skipped before token %q", data, data[:at], tok)
			}
			if len(tok) == 0 || bytes.ContainsAny(tok[:1], " \t\r\n") || bytes.HasPrefix(tok, bom) {
				t.Fatalf("SplitOperations(%q): token %q is empty or starts with white space", data, tok)
			}
			switch after := string(data[at+len(tok) : adv]); {
			case adv == len(data) && after == "":
			case tok[0] == '{' && after == "" && tok[len(tok)-1] == '}':
			case tok[0] != '{' && (after == "\n" || after == "\r\n"):
			default:
				t.Fatalf("SplitOperations(%q): token %q then %q consumed", data, tok, after)
			}
			direct = append(direct, string(tok))
			off += adv
		}
		if !slicesEqual(whole, direct) {
			t.Fatalf("scan(%q) = %q, but split directly %q", in, whole, direct)
		}
		// A valid JSON object comes back whole, however it is laid out
		// (less the white space after it).
		if len(in) > 0 && in[0] == '{' && json.Valid(in) {
			obj := string(bytes.TrimRight(in, " \t\r\n"))
			two := append(append(bytes.Clone(in), '\n'), in...)
			got, err := scan(t, two, false, len(two)+16)
			if err != nil || len(got) != 2 || got[0] != obj || got[1] != obj {
				t.Fatalf("scan(%q twice) = %q, %v", in, got, err)
			}
		}
	})
}

func slicesEqual(a, b []string) bool { return cmp.Equal(a, b) }
