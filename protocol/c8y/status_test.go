package c8y

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestSmartRESTStatus(t *testing.T) {
	tests := []struct {
		st     Status
		reason string
		want   string
	}{
		{StatusExecuting, "", "501,c8y_RemoteAccessConnect"},
		{StatusExecuting, "ignored", "501,c8y_RemoteAccessConnect"},
		{StatusSuccessful, "", "503,c8y_RemoteAccessConnect"},
		{StatusFailed, "Could not connect", `502,c8y_RemoteAccessConnect,"Could not connect"`},
		{StatusFailed, `dial tcp 10.0.0.67:5900: connect: connection refused`, `502,c8y_RemoteAccessConnect,"dial tcp 10.0.0.67:5900: connect: connection refused"`},
		{StatusFailed, `bad "port", try again`, `502,c8y_RemoteAccessConnect,"bad ""port"", try again"`},
		{StatusFailed, "two\nlines\r\n", `502,c8y_RemoteAccessConnect,"two lines"`},
		{StatusFailed, " \n", "502,c8y_RemoteAccessConnect"},
	}
	for _, tt := range tests {
		if got := SmartRESTStatus(tt.st, tt.reason); got != tt.want {
			t.Errorf("SmartRESTStatus(%s, %q) = %q, want %q", tt.st, tt.reason, got, tt.want)
		}
	}
	// A 502 reason must read back as one SmartREST field.
	fields, err := splitCSV(SmartRESTStatus(StatusFailed, `a,"b"`+"\n530,x,h,1,k"))
	if err != nil || len(fields) != 3 || fields[2] != `a,"b" 530,x,h,1,k` {
		t.Errorf("502 splits into %q, %v", fields, err)
	}
}

// An operation with an ID is answered by ID, as the C reference agent
// answers: 303,<id>,<status> and 304,<id>,<reason>.
func TestSmartRESTStatusID(t *testing.T) {
	tests := []struct {
		id     string
		st     Status
		reason string
		want   string
	}{
		{"4711", StatusExecuting, "", "303,4711,EXECUTING"},
		{"4711", StatusExecuting, "ignored", "303,4711,EXECUTING"},
		{"4711", StatusSuccessful, "", "303,4711,SUCCESSFUL"},
		{"4711", StatusFailed, "connection refused", `304,4711,"connection refused"`},
		{"4711", StatusFailed, `bad "port", try again` + "\n", `304,4711,"bad ""port"", try again"`},
		{"4711", StatusFailed, "", `304,4711,""`},
		{"op-7", StatusSuccessful, "", `303,"op-7",SUCCESSFUL`},
		{`a,"b"`, StatusExecuting, "", `303,"a,""b""",EXECUTING`},
	}
	for _, tt := range tests {
		got := SmartRESTStatusID(tt.id, tt.st, tt.reason)
		if got != tt.want {
			t.Errorf("SmartRESTStatusID(%q, %s, %q) = %q, want %q", tt.id, tt.st, tt.reason, got, tt.want)
			continue
		}
		// Every message reads back as three SmartREST fields.
		fields, err := splitCSV(got)
		if err != nil || len(fields) != 3 || fields[1] != tt.id {
			t.Errorf("%q splits into %q, %v", got, fields, err)
		}
	}
}

func TestStatusLine(t *testing.T) {
	const key = "eb5e9d13-1caa-486b-bdda-130ca0d87df8"
	tests := []struct {
		st          Status
		key, reason string
		want        string
	}{
		{StatusExecuting, key, "", "EXECUTING " + key},
		{StatusSuccessful, key, "ignored", "SUCCESSFUL " + key},
		{StatusFailed, key, "dial tcp 10.0.0.67:5900: connection refused", "FAILED " + key + " dial tcp 10.0.0.67:5900: connection refused"},
		{StatusFailed, key, "", "FAILED " + key},
		{StatusFailed, key, "\tline one\nline two  \r\n", "FAILED " + key + " line one line two"},
		{StatusFailed, key, "bad \xff byte", "FAILED " + key + " bad \uFFFD byte"},
		{StatusExecuting, "", "", "EXECUTING _"},
		{StatusExecuting, "a b\nc", "", "EXECUTING a_b_c"},
	}
	for _, tt := range tests {
		got := StatusLine(tt.st, tt.key, tt.reason)
		if got != tt.want {
			t.Errorf("StatusLine(%s, %q, %q) = %q, want %q", tt.st, tt.key, tt.reason, got, tt.want)
			continue
		}
		wantReason := ""
		if tt.st == StatusFailed {
			wantReason = oneLine(tt.reason)
		}
		st, key, reason, err := ParseStatusLine(got + "\n")
		if err != nil || st != tt.st || key != keyWord(tt.key) || reason != wantReason {
			t.Errorf("ParseStatusLine(%q) = %s, %q, %q, %v", got, st, key, reason, err)
		}
	}
}

func TestParseStatusLineBad(t *testing.T) {
	for _, line := range []string{
		"", "\n", "EXECUTING", "EXECUTING ", "executing k", "PENDING k", "EXECUTING  k",
		"EXECUTING k extra", "SUCCESSFUL k extra", "FAILED k ", "FAILED k  two spaces", "FAILED k reason ",
		"FAILED k bad\tchar", "FAILED k bad\xffbyte", "EXECUTING k\xff", "EXECUTING k\n\n",
	} {
		if st, key, reason, err := ParseStatusLine(line); !errors.Is(err, ErrBadStatusLine) {
			t.Errorf("ParseStatusLine(%q) = %s, %q, %q, %v; want an error wrapping ErrBadStatusLine", line, st, key, reason, err)
		}
	}
}

func TestUnknownStatusPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"StatusLine":        func() { StatusLine("PENDING", "k", "") },
		"SmartRESTStatus":   func() { SmartRESTStatus("", "") },
		"SmartRESTStatusID": func() { SmartRESTStatusID("1", "PENDING", "") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with an unknown Status did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestStatusUpdateJSON(t *testing.T) {
	for _, tt := range []struct {
		u    StatusUpdate
		want string
	}{
		{StatusUpdate{Status: StatusExecuting}, `{"status":"EXECUTING"}`},
		{StatusUpdate{Status: StatusFailed, FailureReason: "no route"}, `{"status":"FAILED","failureReason":"no route"}`},
	} {
		if b, err := json.Marshal(tt.u); err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.u, b, err, tt.want)
		}
	}
}
