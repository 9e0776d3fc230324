package c8y

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// seedOperation is the example of the Cumulocity remote access
// documentation (seeds/001), byte for byte.
const seedOperation = `{
"deviceId" : "10200",
"c8y_RemoteAccessConnect": {
"hostname": "10.0.0.67",
"port": 5900,
"connectionKey": "eb5e9d13-1caa-486b-bdda-130ca0d87df8"
},
"description": "Connect to remote access server"
}`

const seedKey = "eb5e9d13-1caa-486b-bdda-130ca0d87df8"

func TestParseOperation(t *testing.T) {
	tests := []struct {
		name, line string
		want       Operation
	}{
		{"seed JSON", seedOperation,
			Operation{DeviceID: "10200", Host: "10.0.0.67", Port: 5900, Key: seedKey}},
		{"REST operation with id", `{"creationTime":"2024-01-01T00:00:00.000Z","deviceId":"10200","id":"4711","status":"PENDING",` +
			`"self":"https://t.example.com/devicecontrol/operations/4711","description":"Connect to remote access server",` +
			`"c8y_RemoteAccessConnect":{"hostname":"127.0.0.1","port":22,"connectionKey":"` + seedKey + `"}}`,
			Operation{ID: "4711", DeviceID: "10200", Host: "127.0.0.1", Port: 22, Key: seedKey}},
		{"numeric ids", `{"id":4711,"deviceId":10200,"c8y_RemoteAccessConnect":{"hostname":"h","port":1,"connectionKey":"k"}}`,
			Operation{ID: "4711", DeviceID: "10200", Host: "h", Port: 1, Key: "k"}},
		{"port as string", `{"c8y_RemoteAccessConnect":{"hostname":"h","port":"65535","connectionKey":"k"}}`,
			Operation{Host: "h", Port: 65535, Key: "k"}},
		{"null ids", `{"id":null,"deviceId":null,"c8y_RemoteAccessConnect":{"hostname":"h","port":80,"connectionKey":"k"}}`,
			Operation{Host: "h", Port: 80, Key: "k"}},
		{"IPv6 in brackets", `{"c8y_RemoteAccessConnect":{"hostname":"[fe80::1%eth0]","port":80,"connectionKey":"k"}}`,
			Operation{Host: "fe80::1%eth0", Port: 80, Key: "k"}},
		{"JSON with line end", "{\"c8y_RemoteAccessConnect\":{\"hostname\":\"h\",\"port\":80,\"connectionKey\":\"k\"}}\r\n",
			Operation{Host: "h", Port: 80, Key: "k"}},

		{"SmartREST docs example", "530,DeviceSerial,10.0.0.67,22," + seedKey,
			Operation{ExternalID: "DeviceSerial", Host: "10.0.0.67", Port: 22, Key: seedKey}},
		{"SmartREST CR", "530,DeviceSerial,10.0.0.67,22," + seedKey + "\r",
			Operation{ExternalID: "DeviceSerial", Host: "10.0.0.67", Port: 22, Key: seedKey}},
		{"SmartREST CRLF", "530,DeviceSerial,10.0.0.67,22," + seedKey + "\r\n",
			Operation{ExternalID: "DeviceSerial", Host: "10.0.0.67", Port: 22, Key: seedKey}},
		{"SmartREST quoted", `530,"Device, ""7""","10.0.0.67","22","` + seedKey + `"`,
			Operation{ExternalID: `Device, "7"`, Host: "10.0.0.67", Port: 22, Key: seedKey}},
		{"SmartREST IPv6", "530,dev,::1,5900,k",
			Operation{ExternalID: "dev", Host: "::1", Port: 5900, Key: "k"}},
		{"SmartREST extra fields", "530,dev,host.local,5900,k,future,\"x\"",
			Operation{ExternalID: "dev", Host: "host.local", Port: 5900, Key: "k"}},
		{"SmartREST empty external id", "530,,h,1,k",
			Operation{Host: "h", Port: 1, Key: "k"}},
		{"SmartREST with BOM", "\uFEFF530,dev,h,1,k",
			Operation{ExternalID: "dev", Host: "h", Port: 1, Key: "k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOperation([]byte(tt.line))
			if err != nil {
				t.Fatalf("ParseOperation(%q) = %v", tt.line, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOperation(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}

func TestParseOperationOther(t *testing.T) {
	for _, line := range []string{
		`{"deviceId":"10200","c8y_Restart":{},"description":"Restart"}`,
		`{}`,
		`{"C8Y_REMOTEACCESSCONNECT":{"hostname":"h","port":1,"connectionKey":"k"}}`,
		"510,DeviceSerial",
		`511,DeviceSerial,"unterminated`,
		"5300,dev,h,1,k",
		"0530,dev,h,1,k",
		"530", // template alone: no comma, but still template 530
	} {
		_, err := ParseOperation([]byte(line))
		if line == "530" {
			if !errors.Is(err, ErrBadOperation) {
				t.Errorf("ParseOperation(%q) = %v; want ErrBadOperation", line, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotRemoteAccess) || errors.Is(err, ErrBadOperation) {
			t.Errorf("ParseOperation(%q) = %v; want ErrNotRemoteAccess only", line, err)
		}
	}
}

func TestParseOperationBad(t *testing.T) {
	op := func(frag string) string { return `{"id":"1","c8y_RemoteAccessConnect":` + frag + `}` }
	tests := []struct {
		name, line string
		in         string // in the message
	}{
		{"fragment null", op(`null`), "is null, want an object"},
		{"fragment string", op(`"x"`), "is a string, want an object"},
		{"no hostname", op(`{"port":1,"connectionKey":"k"}`), "has no hostname"},
		{"hostname number", op(`{"hostname":10,"port":1,"connectionKey":"k"}`), "hostname is a number, want a string"},
		{"hostname empty", op(`{"hostname":"","port":1,"connectionKey":"k"}`), "hostname is empty"},
		{"hostname brackets only", op(`{"hostname":"[]","port":1,"connectionKey":"k"}`), "hostname is empty"},
		{"hostname stray bracket", op(`{"hostname":"[::1","port":1,"connectionKey":"k"}`), "has a bracket"},
		{"hostname double brackets", op(`{"hostname":"[[::1]]","port":1,"connectionKey":"k"}`), "has a bracket"},
		{"hostname space", op(`{"hostname":"a b","port":1,"connectionKey":"k"}`), "white space ' ' at byte 1"},
		{"hostname NUL", op(`{"hostname":"a\u0000","port":1,"connectionKey":"k"}`), `control character '\x00'`},
		{"hostname with port", op(`{"hostname":"10.0.0.67:22","port":22,"connectionKey":"k"}`), "holds a port"},
		{"hostname long", op(`{"hostname":"` + strings.Repeat("h", 256) + `","port":1,"connectionKey":"k"}`), "longer than 255"},
		{"no port", op(`{"hostname":"h","connectionKey":"k"}`), "has no port"},
		{"port zero", op(`{"hostname":"h","port":0,"connectionKey":"k"}`), "out of range"},
		{"port too big", op(`{"hostname":"h","port":65536,"connectionKey":"k"}`), "out of range"},
		{"port huge", op(`{"hostname":"h","port":123456789012345678901234567890,"connectionKey":"k"}`), "out of range"},
		{"port negative", op(`{"hostname":"h","port":-22,"connectionKey":"k"}`), "not a whole number"},
		{"port fraction", op(`{"hostname":"h","port":22.5,"connectionKey":"k"}`), "not a whole number"},
		{"port exponent", op(`{"hostname":"h","port":2.2e1,"connectionKey":"k"}`), "not a whole number"},
		{"port word", op(`{"hostname":"h","port":"ssh","connectionKey":"k"}`), `port "ssh" is not a whole number`},
		{"port empty string", op(`{"hostname":"h","port":"","connectionKey":"k"}`), "not a whole number"},
		{"port padded string", op(`{"hostname":"h","port":" 22","connectionKey":"k"}`), "not a whole number"},
		{"port bool", op(`{"hostname":"h","port":true,"connectionKey":"k"}`), "port is a boolean, want a number"},
		{"port null", op(`{"hostname":"h","port":null,"connectionKey":"k"}`), "port is null"},
		{"no key", op(`{"hostname":"h","port":1}`), "has no connectionKey"},
		{"key empty", op(`{"hostname":"h","port":1,"connectionKey":""}`), "connectionKey is empty"},
		{"key number", op(`{"hostname":"h","port":1,"connectionKey":7}`), "connectionKey is a number"},
		{"key space", op(`{"hostname":"h","port":1,"connectionKey":"a b"}`), "white space"},
		{"key newline", op(`{"hostname":"h","port":1,"connectionKey":"a\nb"}`), "control character"},
		{"key invalid UTF-8", "530,d,h,1,k\xff", "invalid UTF-8"},
		{"key long", op(`{"hostname":"h","port":1,"connectionKey":"` + strings.Repeat("k", 1025) + `"}`), "more than 1024"},
		{"id object", `{"id":{},"c8y_RemoteAccessConnect":{"hostname":"h","port":1,"connectionKey":"k"}}`, "id is an object"},
		{"id fraction", `{"id":1.5,"c8y_RemoteAccessConnect":{"hostname":"h","port":1,"connectionKey":"k"}}`, "id 1.5 is not a whole number"},
		{"deviceId control", `{"deviceId":"a\u0007","c8y_RemoteAccessConnect":{"hostname":"h","port":1,"connectionKey":"k"}}`, "deviceId"},

		{"530 too few fields", "530,dev,h,22", "has 4 fields, want 5"},
		{"530 port word", "530,dev,h,ssh,k", "not a whole number"},
		{"530 port range", "530,dev,h,70000,k", "out of range"},
		{"530 empty host", "530,dev,,22,k", "hostname is empty"},
		{"530 empty key", "530,dev,h,22,", "connectionKey is empty"},
		{"530 unclosed quote", `530,"dev,h,22,k`, "no closing quote"},
		{"530 text after quote", `530,"dev"x,h,22,k`, "text after its closing quote"},
		{"530 stray quote", `530,de"v,h,22,k`, "does not start with one"},
		{"530 two lines", "530,dev,h,22,k\n530,dev,h,22,k", "line break"},
		{"530 CR inside", "530,dev\r,h,22,k", "line break"},
		{"530 control in external id", "530,\"d\x01\",h,22,k", "externalId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOperation([]byte(tt.line))
			if !errors.Is(err, ErrBadOperation) || errors.Is(err, ErrNotOperation) {
				t.Fatalf("ParseOperation(%.60q) = %+v, %v; want an error wrapping ErrBadOperation only", tt.line, got, err)
			}
			if !strings.Contains(err.Error(), tt.in) || !strings.HasPrefix(err.Error(), "c8y: ") {
				t.Errorf("error %q does not start \"c8y: \" and contain %q", err, tt.in)
			}
			// The ID, where it could be read, comes back to report the
			// failure by.
			if want := (Operation{ID: "1"}); strings.HasPrefix(tt.line, `{"id":"1",`) && got != want {
				t.Errorf("ParseOperation(%.60q) returned %+v with the error, want %+v", tt.line, got, want)
			}
		})
	}
}

// Input that is no operation at all is told apart from a bad
// c8y_RemoteAccessConnect: nothing says which operation to fail.
func TestParseOperationNotOperation(t *testing.T) {
	for _, tt := range []struct{ name, line, in string }{
		{"empty", "", "empty operation"},
		{"spaces", " \r\n", "empty operation"},
		{"neither", "hello", "neither a JSON object nor a SmartREST line"},
		{"letters after digits", "x530,d,h,1,k", "neither"},
		{"JSON array", `[{"c8y_RemoteAccessConnect":{}}]`, "neither"},
		{"bad JSON", `{"c8y_RemoteAccessConnect":`, "not valid JSON"},
		{"JSON trailing data", `{} {}`, "not valid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOperation([]byte(tt.line))
			if !errors.Is(err, ErrNotOperation) || errors.Is(err, ErrBadOperation) || errors.Is(err, ErrNotRemoteAccess) {
				t.Fatalf("ParseOperation(%q) = %+v, %v; want an error wrapping ErrNotOperation only", tt.line, got, err)
			}
			if !strings.Contains(err.Error(), tt.in) || got != (Operation{}) {
				t.Errorf("ParseOperation(%q) = %+v, %v; want no fields and an error containing %q", tt.line, got, err, tt.in)
			}
		})
	}
}

// encode530 is a SmartREST 530 line for op, every field quoted.
func encode530(op Operation) string {
	return strings.Join([]string{"530", quoteCSV(op.ExternalID), quoteCSV(op.Host),
		strconv.Itoa(op.Port), quoteCSV(op.Key)}, ",")
}

// encodeJSON is a JSON operation for op.
func encodeJSON(t testing.TB, op Operation) []byte {
	type fragment struct {
		Hostname      string `json:"hostname"`
		Port          int    `json:"port"`
		ConnectionKey string `json:"connectionKey"`
	}
	b, err := json.Marshal(struct {
		ID       string   `json:"id,omitempty"`
		DeviceID string   `json:"deviceId,omitempty"`
		Connect  fragment `json:"c8y_RemoteAccessConnect"`
	}{op.ID, op.DeviceID, fragment{op.Host, op.Port, op.Key}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseOperation(f *testing.F) {
	for _, s := range []string{
		seedOperation,
		`{"id":"4711","deviceId":10200,"c8y_RemoteAccessConnect":{"hostname":"[::1]","port":"22","connectionKey":"k"}}`,
		`{"c8y_Restart":{}}`,
		"530,DeviceSerial,10.0.0.67,22," + seedKey + "\r\n",
		`530,"Device, ""7""","10.0.0.67","22","` + seedKey + `"`,
		"510,DeviceSerial", "530,d,h,70000,k", `530,"d`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		op, err := ParseOperation(line)
		if err != nil {
			n := 0
			for _, s := range []error{ErrNotRemoteAccess, ErrBadOperation, ErrNotOperation} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("ParseOperation(%q) = %v; want exactly one of the sentinels", line, err)
			}
			if !errors.Is(err, ErrBadOperation) && op != (Operation{}) || op != (Operation{ID: op.ID, DeviceID: op.DeviceID}) {
				t.Fatalf("ParseOperation(%q) = %+v, %v; want at most the IDs with an error", line, op, err)
			}
			return
		}
		if op.Host == "" || op.Port < 1 || op.Port > 65535 || !validKey(op.Key) {
			t.Fatalf("ParseOperation(%q) = %+v, which breaks Operation's guarantees", line, op)
		}
		if (op.ID != "" || op.DeviceID != "") && op.ExternalID != "" {
			t.Fatalf("ParseOperation(%q) = %+v mixes JSON and SmartREST fields", line, op)
		}

		// Whatever the form it came in, the operation survives both forms.
		if op.ID == "" && op.DeviceID == "" {
			again, err := ParseOperation([]byte(encode530(op)))
			if err != nil || again != op {
				t.Fatalf("%+v as SmartREST %q parses to %+v, %v", op, encode530(op), again, err)
			}
		}
		if op.ExternalID == "" {
			again, err := ParseOperation(encodeJSON(t, op))
			if err != nil || again != op {
				t.Fatalf("%+v as JSON %s parses to %+v, %v", op, encodeJSON(t, op), again, err)
			}
		}

		if key, ok := ParseDevicePath(DevicePath(op.Key)); !ok || key != op.Key {
			t.Fatalf("ParseDevicePath(DevicePath(%q)) = %q, %v", op.Key, key, ok)
		}
		st, key, reason, err := ParseStatusLine(StatusLine(StatusFailed, op.Key, op.Host))
		if err != nil || st != StatusFailed || key != op.Key || reason != oneLine(op.Host) {
			t.Fatalf("status line for %+v parses to %v, %q, %q, %v", op, st, key, reason, err)
		}
	})
}
