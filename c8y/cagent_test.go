package c8y_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"rtcp"
	wire "rtcp/protocol/c8y"
)

// cAgent plays the Cumulocity C reference agent (cumulocity-agents-linux,
// src/vnc/vnc.c) on the wire: its upgrade request byte for byte, its
// frames as its ts_recv makes them, and its reading of frame lengths.
type cAgent struct {
	c  net.Conn
	br *bufio.Reader
}

const cAgentKey = "dGhlIHNhbXBsZSBub25jazz=="

// dialCAgent opens the device endpoint for key at the HTTP server addr
// with the agent's exact request, and checks the answer.
func dialCAgent(t *testing.T, addr, key string) *cAgent {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("t123/device:pw"))
	req := "GET " + wire.DevicePath(key) + " HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHost: " + addr + "\r\n" +
		"Sec-WebSocket-Key: " + cAgentKey + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: " + auth + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	a := &cAgent{c: c, br: bufio.NewReader(c)}
	resp, err := http.ReadResponse(a.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("the DP answered the C agent's upgrade with %s %q", resp.Status, body)
	}
	h := sha1.Sum([]byte(cAgentKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(h[:]); got != want {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return a
}

// send writes p as the agent does: frames of at most 2040 bytes, masked
// with 00 00 00 00, a 16-bit length from 125 bytes up.
func (a *cAgent) send(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), 2040)
		f := []byte{0x82}
		if n < 125 {
			f = append(f, 0x80|byte(n))
		} else {
			f = append(f, 0xfe, byte(n>>8), byte(n))
		}
		f = append(f, 0, 0, 0, 0)
		if _, err := a.c.Write(append(f, p[:n]...)); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// recv reads n bytes of data frames from the DP, failing on a frame of
// 32768 bytes or more, which the agent misreads: it reads the high byte of
// a 16-bit length through a signed char.
func (a *cAgent) recv(n int) ([]byte, error) {
	var got []byte
	for len(got) < n {
		var h [2]byte
		if _, err := io.ReadFull(a.br, h[:]); err != nil {
			return got, err
		}
		if op := h[0] & 0x0f; op != 2 && op != 0 {
			return got, fmt.Errorf("frame with opcode %d", op)
		}
		size := int(h[1] & 0x7f)
		switch size {
		case 126:
			var b [2]byte
			io.ReadFull(a.br, b[:])
			size = int(binary.BigEndian.Uint16(b[:]))
			if agentSize := int(int8(b[0]))<<8 | int(b[1]); agentSize != size {
				return got, fmt.Errorf("a frame of %d bytes, which the C agent reads as %d", size, agentSize)
			}
		case 127:
			var b [8]byte
			io.ReadFull(a.br, b[:])
			size = int(binary.BigEndian.Uint64(b[:]))
		}
		if size >= 1<<15 {
			return got, fmt.Errorf("a frame of %d bytes; the C agent misreads frames of 32768 bytes or more", size)
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(a.br, p); err != nil {
			return got, err
		}
		got = append(got, p...)
	}
	return got, nil
}

// closeFrame is the agent's close frame (status 1000, masked with zeros).
const closeFrame = "\x88\x82\x00\x00\x00\x00\x03\xe8"

// The DP's device endpoint serves the C reference agent as the cloud
// does: the agent's own upgrade request, replayed over loopback TCP, is
// accepted, and a client reaches the device through the DP both ways.
func TestDeviceEndpointCReferenceAgent(t *testing.T) {
	s := newDP(t, "tok")
	k, err := s.srv.NewKey("pi-vnc", 0)
	if err != nil {
		t.Fatal(err)
	}
	agent := dialCAgent(t, s.http.Listener.Addr().String(), k.Key)
	client, err := rtcp.Dial(s.dpAddr, k.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	up := []byte(strings.Repeat("RFB 003.008\n", 1000)) // 12 KB, in 6 frames
	go agent.send(up)
	if got := readN(t, client, len(up)); got != string(up) {
		t.Fatal("the client read something else than the device sent")
	}
	down := []byte("client hello")
	client.Write(down)
	got, err := agent.recv(len(down))
	if err != nil || string(got) != string(down) {
		t.Fatalf("the device read %q, %v", got, err)
	}
	// A client that writes a lot at once: the DP writes it to the device
	// in frames the agent reads right.
	big := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
	go client.Write(big)
	got, err = agent.recv(len(big))
	if err != nil || string(got) != string(big) {
		t.Fatalf("the device read %d of %d bytes: %v", len(got), len(big), err)
	}

	// The agent's close ends the tunnel.
	io.WriteString(agent.c, closeFrame)
	wantEnd(t, client, "client after the device closed")
}
