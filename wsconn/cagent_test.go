package wsconn_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rtcp/wsconn"
)

// cAgentKey is the Sec-WebSocket-Key of the Cumulocity C reference agent:
// 25 characters, not the base64 of 16 bytes.
const cAgentKey = "dGhlIHNhbXBsZSBub25jazz=="

// cAgentUpgrade is the opening handshake of the C reference agent, byte
// for byte: no subprotocol, no Origin.
func cAgentUpgrade(path, host, auth string) string {
	return "GET " + path + " HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHost: " + host + "\r\n" +
		"Sec-WebSocket-Key: " + cAgentKey + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: " + auth + "\r\n\r\n"
}

// cAgentFrame is a data frame as the agent's ts_recv makes it: binary,
// FIN, masked with the key 00 00 00 00, and a 16-bit length for 125 bytes
// and more (125 itself included, which RFC 6455 would write in 7 bits).
func cAgentFrame(p []byte) []byte {
	if len(p) > 2040 {
		panic("the C agent sends at most 2040 bytes a frame")
	}
	f := []byte{0x82}
	if len(p) < 125 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0xfe, byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, p...)
}

// readFrame reads one frame the server sent (unmasked) and returns its
// opcode and payload, and the length as the C agent's ws_recv would read
// it: it reads the 16-bit length's high byte through a signed char.
func readFrame(r io.Reader) (opcode byte, payload []byte, agentLen int64, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, 0, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, 0, fmt.Errorf("the server masked a frame")
	}
	n := int64(h[1])
	agentLen = n
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, 0, err
		}
		n = int64(binary.BigEndian.Uint16(b[:]))
		agentLen = int64(int8(b[0]))<<8 | int64(b[1]) // pch[2] is a char
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, 0, err
		}
		n = int64(binary.BigEndian.Uint64(b[:]))
		agentLen = n
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, 0, err
	}
	return h[0] & 0x0f, payload, agentLen, nil
}

func wantAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// The C reference agent's upgrade, replayed over loopback TCP, is
// accepted with LenientKey (and refused without, as the library refuses
// it), and its frames carry bytes both ways.
func TestAcceptCReferenceAgent(t *testing.T) {
	for _, lenient := range []bool{false, true} {
		t.Run(fmt.Sprintf("LenientKey=%v", lenient), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				a := &wsconn.Acceptor{Subprotocol: "binary", LenientKey: lenient}
				c, err := a.Accept(w, r)
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c)
			}))
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, cAgentUpgrade("/service/remoteaccess/device/k", srv.Listener.Addr().String(), "Basic dDEyMy91OnB3")); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !lenient {
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("strict Accept answered %s, want 400", resp.Status)
				}
				return
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("answer %s %q, want 101", resp.Status, body)
			}
			if got, want := resp.Header.Get("Sec-WebSocket-Accept"), wantAccept(cAgentKey); got != want {
				t.Errorf("Sec-WebSocket-Accept %q, want %q (from the key as sent)", got, want)
			}
			if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
				t.Errorf("answered subprotocol %q to a client that offered none", p)
			}
			for _, n := range []int{1, 124, 125, 126, 2040} {
				msg := []byte(strings.Repeat("x", n-1) + "!")
				if _, err := c.Write(cAgentFrame(msg)); err != nil {
					t.Fatal(err)
				}
				op, got, _, err := readFrame(br)
				if err != nil || op != 2 || string(got) != string(msg) {
					t.Fatalf("echo of %d bytes: opcode %d, %d bytes, %v", n, op, len(got), err)
				}
			}
		})
	}
}

// Keys that LenientKey still refuses, sent raw over loopback TCP.
func TestAcceptLenientKeyRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&wsconn.Acceptor{LenientKey: true}).Accept(w, r)
		if err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	for _, keys := range [][]string{
		nil, {""}, {"a b"}, {strings.Repeat("k", 65)}, {"k\x7f"}, {"k\xff"}, {cAgentKey, cAgentKey},
	} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		req := "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHost: x\r\nSec-WebSocket-Version: 13\r\n"
		for _, k := range keys {
			req += "Sec-WebSocket-Key: " + k + "\r\n"
		}
		io.WriteString(c, req+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("keys %q: %v", keys, err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("keys %q: %s, want 400", keys, resp.Status)
		}
	}
}

// With MaxMessage, a long Write reaches the peer as messages no longer
// than that, in order, and Write counts every byte.
func TestAcceptMaxMessage(t *testing.T) {
	const max = 1<<15 - 1
	wrote := make(chan error, 1)
	want := []byte(strings.Repeat("0123456789abcdef", 1<<14)) // 256 KiB, a relay chunk
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&wsconn.Acceptor{LenientKey: true, MaxMessage: max}).Accept(w, r)
		if err != nil {
			wrote <- err
			return
		}
		defer c.Close()
		n, err := c.Write(want)
		if err == nil && n != len(want) {
			err = fmt.Errorf("Write = %d, want %d", n, len(want))
		}
		wrote <- err
		io.Copy(io.Discard, c) // until the client goes
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, cAgentUpgrade("/", "x", "Basic eA=="))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var got []byte
	for len(got) < len(want) {
		op, p, agentLen, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if op != 2 || len(p) > max || agentLen != int64(len(p)) {
			t.Fatalf("frame: opcode %d, %d bytes (the C agent reads %d); want binary, at most %d", op, len(p), agentLen, max)
		}
		got = append(got, p...)
	}
	if string(got) != string(want) {
		t.Fatal("the messages do not add up to what was written")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
