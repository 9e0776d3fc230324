package plan5

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// transcript joins messages as they travel on one connection.
func transcript(msgs ...Message) []byte {
	var b []byte
	for _, m := range msgs {
		b = AppendMessage(b, m)
	}
	return b
}

// fuzzSeeds are whole conversations, as each side of a link reads them.
func fuzzSeeds() [][]byte {
	payload := []byte("GET / HTTP/1.1\r\nHost: printer\r\n\r\n")
	return [][]byte{
		// What a DP reads on an IS link: Aloha, Ack, Data, a credit
		// grant, half-close, Close.
		transcript(
			&Aloha{V: Version, R: RoleIS, N: "printer-7", Window: 262144, MaxLine: 65536, HalfClose: true, Owner: "3f2a"},
			&Ack{X: 1},
			&Data{X: 1, C: []byte("HTTP/1.1 200 OK\r\n\r\n")},
			&Data{X: 1, Window: 131072},
			&Close{X: 1, Half: true},
			&Ack{X: -1, R: "rtcp: server is not accepting sessions fast enough"},
			&Close{X: 1, R: "closed"},
		),
		// What an IS reads from the DP: Aloha, the seed's second Aloha,
		// Connect, Data, Close, and the end of the link.
		transcript(
			&Aloha{V: Version, R: RoleDP, N: "rtcp", Window: 262144, MaxLine: 65536, HalfClose: true},
			&Aloha{V: Version, R: RoleIC, N: "alice"},
			&Connect{N: "alice", Addr: "203.0.113.5:40112"},
			&Data{X: 1, C: payload},
			&Close{X: 1, R: "rtcp: session receive buffer full", Abort: true},
			&Close{X: -1, R: "rtcp: DP shutting down", Abort: true},
		),
		// A plain IC and the DP: no extensions at all.
		transcript(
			&Aloha{V: 10000, R: RoleIC, N: ""},
			&Connect{N: "printer-7"},
			&Data{X: 1, C: payload},
			&Close{X: 1, R: "bye"},
		),
		// Refusals.
		transcript(&Aloha{V: 10000, R: RoleAbortVersion, N: "rtcp", Error: "version 20000 is not compatible"}),
		transcript(&Aloha{V: 10000, R: RoleDP, N: "rtcp", Error: "name \"x\" is taken"}, &Ack{X: -1, R: "no server"}),
		// Every key, an empty payload, the longest X.
		transcript(
			&Aloha{V: 19999, R: RoleDP, N: "n", HeartBeat: 15000, Window: 1, MaxLine: 1024, HalfClose: true, Owner: "o", Transport: "yamux", Error: "e"},
			&Data{X: -9223372036854775808},
			&Data{X: 9223372036854775807, C: []byte{0}, Window: 7},
		),
		// The authentication exchange (SPEC.md, "Authentication").
		transcript(
			&Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Key: "alice"},
			&Aloha{V: 10000, R: RoleDP, N: "rtcp", Challenge: payload[:32], Binding: "tls-exporter"},
			&Aloha{V: 10000, R: RoleIS, N: "printer-7", Proof: payload[:32]},
		),
		// A direct session (SPEC.md, "Direct sessions"): the server's
		// Aloha, the client's Connect, and what the DP sends each side.
		transcript(
			&Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Direct: true},
			&Connect{N: "printer-7", Direct: true},
			&Connect{N: "printer-7", Direct: true, EarlyPeer: true},
			&Connect{N: "alice", Addr: "203.0.113.5:40112", Peer: "203.0.113.5:40112", Secret: payload[:32]},
			&Ack{X: 0, Peer: "198.51.100.7:51000", Secret: payload[:32]},
			&Ack{X: 1, Peer: "198.51.100.7:51000", Secret: payload[:32]},
		),
		// What a buggy DP may send a client that asked for the early
		// offer: the offer twice, one with no secret or a bad address,
		// one after the answer; and EarlyPeer without Direct.
		transcript(
			&Connect{N: "printer-7", EarlyPeer: true},
			&Ack{X: 0, Peer: "198.51.100.7:51000", Secret: payload[:32]},
			&Ack{X: 0, Peer: "198.51.100.7:51000", Secret: payload[:32]},
			&Ack{X: 0, Peer: "198.51.100.7:51000"},
			&Ack{X: 0, Peer: "not an address", Secret: payload[:32]},
			&Ack{X: 0, Secret: payload[:1]},
			&Ack{X: -1, R: "no", Peer: "198.51.100.7:51000", Secret: payload[:32]},
		),
		// A session one DP of a cluster carries to another (SPEC.md, "Via").
		transcript(
			&Aloha{V: 10000, R: RoleIC, N: "alice", Window: 262144, MaxLine: 65536, HalfClose: true, Transport: "raw", Via: "10.0.0.3:9000"},
			&Connect{N: "printer-7"},
		),
		// The same hop, by a DP that proves a key and speaks for its client.
		transcript(
			&Aloha{V: 10000, R: RoleIC, N: "alice", Transport: "raw", Via: "10.0.0.3:9000", Key: "cluster", To: "10.0.0.1:9000", ClientKey: "alice", ClientAddr: "203.0.113.5:40112"},
			&Aloha{V: 10000, R: RoleDP, N: "rtcp", Challenge: payload[:32]},
			&Aloha{V: 10000, R: RoleIC, N: "alice", Proof: payload[:32]},
			&Connect{N: "printer-7"},
		),
		// A control link of the TCP transport that keeps spare data links,
		// and a session on one of them (SPEC.md, "Spare data links").
		transcript(
			&Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Transport: "tcp", Spares: 2},
			&Aloha{V: 10000, R: RoleDP, N: "rtcp", Transport: "tcp", Token: "9f1c", Spares: 2},
			&Aloha{V: 10000, R: RoleIS, N: "printer-7", Owner: "3f2a", Transport: "spare", Token: "9f1c"},
			&Connect{N: "alice", Addr: "203.0.113.5:40112"},
			&Ack{X: 1},
		),
		// Forms only the encoding/json path reads.
		[]byte("3\n{ \"C\" : \"AAEC/w==\", \"X\" : 7, \"Future\": [1, {\"a\": null}] }\n0\n{\"N\":\"caf\\u00e9\",\"V\":10000}\n"),
		// Bad input.
		[]byte("9\n{}\n"),
		[]byte("3\r\n{\"X\":1,\"C\":\"\"}\r\n"),
		[]byte("3\n{\"X\":01,\"C\":\"AA==\"}\n"),
		[]byte("3\n{\"X\":1,\"C\":\"AA\r==\"}\n"),
		[]byte("2\n{\"X\":1"),
		[]byte("1\n" + strings.Repeat("x", 2100) + "\n"),
	}
}

// FuzzReadMessage reads arbitrary bytes as a connection. It must never
// panic, must fail only with the errors the package documents, and every
// message it returns must encode to a canonical form that decodes to the
// same value and encodes to the same bytes again.
func FuzzReadMessage(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), MinMaxLine*2)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF &&
					!errors.Is(err, ErrBadType) && !errors.Is(err, ErrBadJSON) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("undocumented error %T: %v", err, err)
				}
				return
			}
			if m == nil {
				t.Fatal("nil message with nil error")
			}
			enc := AppendMessage(nil, m)
			if enc[0] != '0'+byte(m.Type()) || enc[1] != '\n' || enc[len(enc)-1] != '\n' ||
				bytes.Count(enc, []byte("\n")) != 2 || bytes.IndexByte(enc, '\r') >= 0 {
				t.Fatalf("%v encodes to %q: not a type line and one JSON line", m.Type(), enc)
			}
			// A re-encoded line may be longer than the original (escapes).
			m2, err := NewReader(bytes.NewReader(enc), 1<<20).ReadMessage()
			if err != nil {
				t.Fatalf("re-encoded %v %q does not decode: %v", m.Type(), enc, err)
			}
			if diff := cmp.Diff(m, m2, equal); diff != "" {
				t.Fatalf("%q decodes differently after re-encoding (-first +second):\n%s", enc, diff)
			}
			if enc2 := AppendMessage(nil, m2); !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding is not stable:\n%q\n%q", enc, enc2)
			}
		}
	})
}

// TestFuzzSeedsDecode: the valid transcripts among the seeds decode
// completely, so the fuzzer starts from real conversations.
func TestFuzzSeedsDecode(t *testing.T) {
	for i, s := range fuzzSeeds()[:8] {
		r := NewReader(bytes.NewReader(s), 0)
		n := 0
		for {
			_, err := r.ReadMessage()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("seed %d, message %d: %v", i, n, err)
			}
			n++
		}
		if n == 0 {
			t.Errorf("seed %d holds no message", i)
		}
	}
}

// FuzzDataFastPath holds the hand-written Data decoder to encoding/json:
// whatever body it accepts, encoding/json accepts with the same X and C.
func FuzzDataFastPath(f *testing.F) {
	for _, s := range []string{
		`{"X":7,"C":"AAEC/w=="}`, `{"X":-1,"C":""}`, `{"X":0,"C":"aGVsbG8="}`,
		`{"X":07,"C":"AA=="}`, "{\"X\":1,\"C\":\"AA\r\n==\"}", `{"X":1,"C":"A\"A=="}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Reader
		if !r.fastData(body) {
			return
		}
		var want Data
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", body, err)
		}
		if want.X != r.data.X || !bytes.Equal(want.C, r.data.C) {
			t.Fatalf("fast path read %q as X=%d C=%x, encoding/json as X=%d C=%x", body, r.data.X, r.data.C, want.X, want.C)
		}
	})
}

// FuzzHandshakeFastPath holds the hand-written Connect and Ack decoders to
// encoding/json: whatever body one accepts, encoding/json accepts with the
// same fields.
func FuzzHandshakeFastPath(f *testing.F) {
	for _, s := range []string{
		`{"X":7}`, `{"X":-1}`, `{"X":007}`, `{"X":1,"R":"no"}`, `{"x":1}`,
		`{"N":"printer-7"}`, `{"N":"a","Addr":"10.0.0.1:5"}`, `{"N":"a","Addr":"b","Token":"t0k"}`,
		`{"N":"a","Direct":true}`, `{"N":"a","Direct":true,"EarlyPeer":true}`, `{"N":"a","Addr":"b","Peer":"10.0.0.2:5","Secret":"AAEC"}`, `{"X":1,"Peer":"10.0.0.2:5","Secret":"AAEC"}`,
		`{"V":10000,"R":2,"N":"s","Owner":"o","Direct":true}`, `{"Direct":1}`,
		`{"N":"a\"b"}`, `{"N":"\u00e9"}`, `{"N":"a","Token":"t"}`, `{"N":"<b>"}`,
		`{"V":10000,"R":3,"N":"c","HeartBeat":15000,"Window":262144,"MaxLine":65536,"HalfClose":true,"Transport":"raw"}`,
		`{"V":10000,"R":4,"N":"dp","Challenge":"AAEC","Binding":"tls-exporter"}`,
		`{"V":10000,"R":4,"N":"rtcp","Transport":"tcp","Token":"9f1c","Spares":2}`, `{"Spares":-1}`, `{"Spares":1.5}`,
		`{"V":1,"R":2,"N":"s","Owner":"o","Key":"k","Proof":""}`,
		`{"V":10000,"R":3,"N":"c","Via":"10.0.0.3:9000","Key":"k","To":"10.0.0.1:9000","ClientKey":"a","ClientAddr":"203.0.113.5:1"}`, `{}`, `{"V":1,"V":2}`, `{"HalfClose":false}`,
		// A brokered dial's Connects and Acks (the DP's early offer, its
		// Connect to the server, the server's Ack), and forms of their
		// keys only encoding/json reads or that it refuses.
		`{"N":"printer-7","Direct":true,"EarlyPeer":true}`,
		`{"N":"alice","Addr":"203.0.113.5:40112","Peer":"203.0.113.5:40112","Secret":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}`,
		`{"X":0,"Peer":"198.51.100.7:51000","Secret":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}`,
		`{"X":9223372036854775807,"Peer":"[2001:db8::1]:5","Secret":"AA=="}`, `{"X":9223372036854775808,"Peer":"a"}`,
		`{"X":1,"Secret":""}`, `{"X":1,"Peer":""}`, `{"X":1,"Secret":null}`, `{"X":1,"Secret":"AAE"}`, `{"X":1,"Secret":"AA\/="}`,
		`{"X":1,"Secret":"AAE=","Peer":"a"}`, `{"X":1,"Peer":"a","Peer":"b"}`, `{"X":1,"Peer":"a\u0041"}`, `{"X":1,"Peer":1}`,
		`{"N":"a","EarlyPeer":true,"Direct":true}`, `{"N":"a","Direct":false}`, `{"N":"a","Direct":true,"Direct":true}`,
		`{"N":"a","Direct":"true"}`, `{"N":"a","direct":true}`, `{"N":"a","Direct":true,"Secret":"AA==","Peer":"b"}`,
		`{"N":"a","Peer":"b","Secret":"AA==","Secret":"AQ=="}`, `{"N":"a","Direct":true }`, `{"N":"a","Secret":"AAEC","Extra":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, ok := fastAloha(body); ok {
			var want Aloha
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("fast path accepted Aloha %q, encoding/json refuses it: %v", body, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("fast path read Aloha %q as %+v, encoding/json as %+v", body, *got, want)
			}
		}
		if got, ok := fastAck(body); ok {
			var want Ack
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("fast path accepted Ack %q, encoding/json refuses it: %v", body, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("fast path read Ack %q as %+v, encoding/json as %+v", body, *got, want)
			}
		}
		if got, ok := fastConnect(body); ok {
			var want Connect
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("fast path accepted Connect %q, encoding/json refuses it: %v", body, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("fast path read Connect %q as %+v, encoding/json as %+v", body, *got, want)
			}
		}
	})
}

// FuzzAppendFast holds the hand-written Connect and Ack encoders to
// encoding/json: what they write is byte for byte what json.Marshal does.
func FuzzAppendFast(f *testing.F) {
	f.Add("printer-7", "10.0.0.1:5", "", int64(3), "", []byte(nil))
	f.Add("a<b", "", "tok", int64(-1), "refused: \"x\"", []byte{0, 1, 2})
	f.Add("\u00e9", "\x00", "", int64(0), "", []byte{})
	// EarlyPeer on its own, and with Direct: no Peer or Secret, so
	// only EarlyPeer keeps the Connect off the fast path.
	f.Add("printer-7", "", "", int64(8), "", []byte(nil))
	f.Add("printer-7", "", "", int64(12), "", []byte(nil))
	f.Fuzz(func(t *testing.T, n, addr, token string, x int64, reason string, blob []byte) {
		aloha := &Aloha{V: int(x), R: Role(x >> 3), N: n, HeartBeat: int(x >> 1), Window: int(x >> 2), MaxLine: int(x >> 4),
			HalfClose: x&1 == 1, Owner: addr, Transport: token, Error: reason, Token: addr, Spares: int(x >> 5), Via: token, Key: n,
			Challenge: blob, Binding: reason, Proof: blob[len(blob)/2:], To: addr, ClientKey: n, ClientAddr: reason}
		aloha.Direct = x&2 == 2
		direct := &Connect{N: n, Addr: addr, Token: token, Direct: x&4 == 4, EarlyPeer: x&8 == 8, Peer: reason, Secret: blob}
		for _, m := range []Message{&Connect{N: n, Addr: addr, Token: token}, &Ack{X: x, R: reason}, aloha, direct, &Ack{X: x, Peer: addr, Secret: blob}, &Ack{X: x, Peer: token}} {
			got, ok := appendFast(nil, m)
			if !ok {
				continue
			}
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want)+"\n" {
				t.Fatalf("fast path wrote %+v as %q, encoding/json as %q", m, got, want)
			}
			// What the fast path writes, its reader takes (else these
			// would go through encoding/json unnoticed) as the same.
			var back Message
			body := got[:len(got)-1]
			switch m.(type) {
			case *Connect:
				if c, ok := fastConnect(body); ok {
					back = c
				}
			case *Ack:
				if a, ok := fastAck(body); ok {
					back = a
				}
			case *Aloha:
				if a, ok := fastAloha(body); ok {
					back = a
				}
			}
			if back == nil {
				t.Fatalf("fast path wrote %q, its reader refuses it", got)
			}
			if again, _ := appendFast(nil, back); string(again) != string(got) {
				t.Fatalf("fast path wrote %q, read it back as %+v, which it writes as %q", got, back, again)
			}
		}
	})
}
