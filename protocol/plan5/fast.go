package plan5

import (
	"bytes"
	"encoding/base64"
	"strconv"
)

// Fast paths for the handshake messages every session starts with:
// Aloha, Connect and Ack in their usual forms are written and read without
// encoding/json. Its reflection costs time on the dial path, and it grows
// the stack of the goroutine that then relays the session for its whole
// life. Anything else goes through encoding/json, which the fuzz targets
// hold these to.

// plainJSON reports whether s goes between JSON quotes as it is, the way
// encoding/json writes it: printable ASCII other than '"' and '\', and
// other than '<', '>' and '&', which encoding/json escapes.
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendFast appends the JSON body of an Aloha or a Connect whose strings
// are plain, or of an Ack without a reason whose Peer is plain, and its
// '\n'; ok is false for anything else. A direct session's keys (Direct,
// EarlyPeer, Peer, Secret) are on the fast path too: they are on the
// path of a brokered dial's first byte at the client, the DP and the
// server (docs/direct.md).
func appendFast(dst []byte, m Message) (_ []byte, ok bool) {
	switch m := m.(type) {
	case *Aloha:
		return appendAloha(dst, m)
	case *Ack:
		if m.R != "" || !plainJSON(m.Peer) {
			return dst, false
		}
		dst = append(dst, `{"X":`...)
		dst = strconv.AppendInt(dst, m.X, 10)
		dst = appendPeer(dst, m.Peer, m.Secret)
		return append(dst, '}', '\n'), true
	case *Connect:
		if !plainJSON(m.N) || !plainJSON(m.Addr) || !plainJSON(m.Token) || !plainJSON(m.Peer) {
			return dst, false
		}
		dst = append(dst, `{"N":"`...)
		dst = append(dst, m.N...)
		dst = append(dst, '"')
		if m.Addr != "" {
			dst = append(dst, `,"Addr":"`...)
			dst = append(dst, m.Addr...)
			dst = append(dst, '"')
		}
		if m.Token != "" {
			dst = append(dst, `,"Token":"`...)
			dst = append(dst, m.Token...)
			dst = append(dst, '"')
		}
		if m.Direct {
			dst = append(dst, `,"Direct":true`...)
		}
		if m.EarlyPeer {
			dst = append(dst, `,"EarlyPeer":true`...)
		}
		dst = appendPeer(dst, m.Peer, m.Secret)
		return append(dst, '}', '\n'), true
	}
	return dst, false
}

// appendPeer appends the Peer and Secret keys of a Connect or an Ack, as
// encoding/json writes them (omitted when empty; Secret in standard
// base64). peer must be plain.
func appendPeer(dst []byte, peer string, secret []byte) []byte {
	if peer != "" {
		dst = append(dst, `,"Peer":"`...)
		dst = append(dst, peer...)
		dst = append(dst, '"')
	}
	if len(secret) > 0 {
		dst = append(dst, `,"Secret":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, secret)
		dst = append(dst, '"')
	}
	return dst
}

// fastPeer reads the Peer and Secret keys, each if present and in that
// order, at the start of b into *peer and *secret, and returns what
// follows.
func fastPeer(b []byte, peer *string, secret *[]byte) ([]byte, bool) {
	var ok bool
	if bytes.HasPrefix(b, []byte(`,"Peer":"`)) {
		if b, ok = fastField(b, `,"Peer":"`, peer); !ok {
			return nil, false
		}
	}
	if bytes.HasPrefix(b, []byte(`,"Secret":"`)) {
		var s string
		if b, ok = fastField(b, `,"Secret":"`, &s); !ok {
			return nil, false
		}
		v, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, false
		}
		*secret = v
	}
	return b, true
}

// fastInt reads the JSON integer at the start of b, refusing what
// encoding/json would read differently or refuse (leading zeros,
// overflow); it returns the number and its length.
func fastInt(b []byte) (x int64, n int, ok bool) {
	if n < len(b) && b[n] == '-' {
		n++
	}
	start := n
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == start || n-start > 1 && b[start] == '0' {
		return 0, 0, false
	}
	x, err := strconv.ParseInt(string(b[:n]), 10, 64)
	return x, n, err == nil
}

// fastAck decodes {"X":n}, with ,"Peer":"s" and ,"Secret":"base64"
// after it if present.
func fastAck(b []byte) (*Ack, bool) {
	const pre = `{"X":`
	if !bytes.HasPrefix(b, []byte(pre)) {
		return nil, false
	}
	x, n, ok := fastInt(b[len(pre):])
	if !ok {
		return nil, false
	}
	a := Ack{X: x}
	if b, ok = fastPeer(b[len(pre)+n:], &a.Peer, &a.Secret); !ok || string(b) != "}" {
		return nil, false
	}
	return &a, true
}

// fastConnect decodes {"N":"s"}, with ,"Addr":"s", ,"Token":"s",
// ,"Direct":true, ,"EarlyPeer":true, ,"Peer":"s" and ,"Secret":"base64"
// after it, each if present and in that order, of plain strings.
func fastConnect(b []byte) (*Connect, bool) {
	var (
		c  Connect
		ok bool
	)
	if b, ok = fastField(b, `{"N":"`, &c.N); !ok {
		return nil, false
	}
	if bytes.HasPrefix(b, []byte(`,"Addr":"`)) {
		if b, ok = fastField(b, `,"Addr":"`, &c.Addr); !ok {
			return nil, false
		}
	}
	if bytes.HasPrefix(b, []byte(`,"Token":"`)) {
		if b, ok = fastField(b, `,"Token":"`, &c.Token); !ok {
			return nil, false
		}
	}
	if bytes.HasPrefix(b, []byte(`,"Direct":true`)) {
		c.Direct, b = true, b[len(`,"Direct":true`):]
	}
	if bytes.HasPrefix(b, []byte(`,"EarlyPeer":true`)) {
		c.EarlyPeer, b = true, b[len(`,"EarlyPeer":true`):]
	}
	if b, ok = fastPeer(b, &c.Peer, &c.Secret); !ok || string(b) != "}" {
		return nil, false
	}
	return &c, true
}

// fastField reads pre, then a plain string up to its closing quote into
// *s, and returns what follows.
func fastField(b []byte, pre string, s *string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(pre)) {
		return nil, false
	}
	b = b[len(pre):]
	end := bytes.IndexByte(b, '"')
	if end < 0 || !plainJSON(b[:end]) {
		return nil, false
	}
	*s = string(b[:end])
	return b[end+1:], true
}

// appendAloha writes a as encoding/json does, field by field in the
// struct's order, when every string in it is plain.
func appendAloha(dst []byte, a *Aloha) (_ []byte, ok bool) {
	strs := [...]string{a.N, a.Owner, a.Transport, a.Error, a.Token, a.Via, a.Key, a.Binding, a.To, a.ClientKey, a.ClientAddr}
	for _, s := range strs {
		if !plainJSON(s) {
			return dst, false
		}
	}
	dst = append(dst, `{"V":`...)
	dst = strconv.AppendInt(dst, int64(a.V), 10)
	dst = append(dst, `,"R":`...)
	dst = strconv.AppendInt(dst, int64(a.R), 10)
	dst = append(dst, `,"N":"`...)
	dst = append(dst, a.N...)
	dst = append(dst, '"')
	num := func(key string, v int) {
		if v != 0 {
			dst = append(dst, `,"`+key+`":`...)
			dst = strconv.AppendInt(dst, int64(v), 10)
		}
	}
	str := func(key, v string) {
		if v != "" {
			dst = append(dst, `,"`+key+`":"`...)
			dst = append(dst, v...)
			dst = append(dst, '"')
		}
	}
	bin := func(key string, v []byte) {
		if len(v) > 0 {
			dst = append(dst, `,"`+key+`":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, v)
			dst = append(dst, '"')
		}
	}
	num("HeartBeat", a.HeartBeat)
	num("Window", a.Window)
	num("MaxLine", a.MaxLine)
	if a.HalfClose {
		dst = append(dst, `,"HalfClose":true`...)
	}
	str("Owner", a.Owner)
	str("Transport", a.Transport)
	str("Error", a.Error)
	str("Token", a.Token)
	num("Spares", a.Spares)
	str("Via", a.Via)
	str("Key", a.Key)
	bin("Challenge", a.Challenge)
	str("Binding", a.Binding)
	bin("Proof", a.Proof)
	str("To", a.To)
	str("ClientKey", a.ClientKey)
	str("ClientAddr", a.ClientAddr)
	if a.Direct {
		dst = append(dst, `,"Direct":true`...)
	}
	return append(dst, '}', '\n'), true
}

// fastAloha decodes an Aloha object of known keys, in any order, whose
// values are integers, booleans and plain strings, with no spaces.
func fastAloha(b []byte) (*Aloha, bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, false
	}
	b = b[1 : len(b)-1]
	var a Aloha
	for i := 0; len(b) > 0; i++ {
		if i > 0 {
			if b[0] != ',' {
				return nil, false
			}
			b = b[1:]
		}
		var key string
		var ok bool
		if b, ok = fastField(b, `"`, &key); !ok || len(b) == 0 || b[0] != ':' {
			return nil, false
		}
		b = b[1:]
		switch f := alohaField(&a, key).(type) {
		case *int:
			if *f, b, ok = fastIntField(b); !ok {
				return nil, false
			}
		case *Role:
			var x int
			if x, b, ok = fastIntField(b); !ok {
				return nil, false
			}
			*f = Role(x)
		case *bool:
			switch {
			case bytes.HasPrefix(b, []byte("true")):
				*f, b = true, b[4:]
			case bytes.HasPrefix(b, []byte("false")):
				*f, b = false, b[5:]
			default:
				return nil, false
			}
		case *string:
			if b, ok = fastField(b, `"`, f); !ok {
				return nil, false
			}
		case *[]byte:
			var s string
			if b, ok = fastField(b, `"`, &s); !ok {
				return nil, false
			}
			v, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, false
			}
			*f = v
		default:
			return nil, false
		}
	}
	return &a, true
}

// fastIntField reads a JSON integer that fits an int at the start of b
// and returns it and what follows.
func fastIntField(b []byte) (int, []byte, bool) {
	x, n, ok := fastInt(b)
	if !ok || int64(int(x)) != x {
		return 0, nil, false
	}
	return int(x), b[n:], true
}

// alohaField returns a pointer to a's field whose JSON key is key, or nil.
func alohaField(a *Aloha, key string) any {
	switch key {
	case "V":
		return &a.V
	case "R":
		return &a.R
	case "N":
		return &a.N
	case "HeartBeat":
		return &a.HeartBeat
	case "Window":
		return &a.Window
	case "MaxLine":
		return &a.MaxLine
	case "HalfClose":
		return &a.HalfClose
	case "Owner":
		return &a.Owner
	case "Transport":
		return &a.Transport
	case "Error":
		return &a.Error
	case "Token":
		return &a.Token
	case "Spares":
		return &a.Spares
	case "Via":
		return &a.Via
	case "Key":
		return &a.Key
	case "Challenge":
		return &a.Challenge
	case "Binding":
		return &a.Binding
	case "Proof":
		return &a.Proof
	case "To":
		return &a.To
	case "ClientKey":
		return &a.ClientKey
	case "ClientAddr":
		return &a.ClientAddr
	case "Direct":
		return &a.Direct
	}
	return nil
}
