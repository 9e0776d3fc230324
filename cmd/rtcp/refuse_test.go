package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// plainClient is Plan5's own client as far as these tests need it: its
// Aloha (V=113, HeartBeat 0) and Connect, each in four writes, and its
// answers read line by line.
type plainClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialPlain(t *testing.T, dp, name string) *plainClient {
	t.Helper()
	c, err := net.Dial("tcp", dp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails, not blocks
	p := &plainClient{t: t, c: c, br: bufio.NewReader(c)}
	p.send('0', `{"V":113,"R":3,"N":"plain","HeartBeat":0}`)
	if typ, m := p.read(); typ != '0' || m["R"] != float64(4) {
		t.Fatalf("the DP answered the Aloha with %c %v", typ, m)
	}
	p.send('1', `{"N":"`+name+`"}`)
	return p
}

func (p *plainClient) send(typ byte, body string) {
	p.t.Helper()
	for _, s := range []string{string(typ), "\n", body, "\n"} {
		if _, err := p.c.Write([]byte(s)); err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *plainClient) read() (byte, map[string]any) {
	p.t.Helper()
	typ, err := p.br.ReadString('\n')
	if err != nil {
		p.t.Fatalf("plain client: %v", err)
	}
	body, err := p.br.ReadBytes('\n')
	if err != nil {
		p.t.Fatalf("plain client: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || len(typ) != 2 {
		p.t.Fatalf("plain client: type line %q, body %q: %v", typ, body, err)
	}
	return typ[0], m
}

// TestExposeRefusalReachesPlainClient: when the service behind rtcp
// expose refuses a session, a plain Plan5 client reads Ack X=-1 with the
// reason, on every transport of expose's links; it used to read Ack X=1
// and then Close "closed", a session that looked accepted and ended. A
// service that answers is carried as before.
func TestExposeRefusalReachesPlainClient(t *testing.T) {
	for _, transport := range []string{"json", "yamux", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0")
			mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "nowhere", "-to", closedPort(t), "-transport", transport)
			mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "echo", "-to", startEcho(t), "-transport", transport)

			p := dialPlain(t, dp.addr, "nowhere")
			typ, m := p.read()
			if typ != '2' || m["X"] != float64(-1) || !strings.Contains(m["R"].(string), "connection refused") {
				t.Fatalf("a plain client of a server whose service refuses read %c %v; want Ack X=-1 with the reason", typ, m)
			}
			t.Logf("the plain client read: 2 %v", m)

			p = dialPlain(t, dp.addr, "echo")
			typ, m = p.read()
			x, _ := m["X"].(float64)
			if typ != '2' || x < 0 {
				t.Fatalf("a plain client of a server whose service answers read %c %v; want Ack", typ, m)
			}
			msg, _ := json.Marshal(map[string]any{"X": x, "C": base64.StdEncoding.EncodeToString([]byte("ping"))})
			p.send('3', string(msg))
			var got []byte
			for len(got) < len("ping") {
				typ, m := p.read()
				if typ != '3' {
					t.Fatalf("the plain client read %c %v; want Data", typ, m)
				}
				b, _ := base64.StdEncoding.DecodeString(m["C"].(string))
				got = append(got, b...)
			}
			if string(got) != "ping" {
				t.Errorf("the plain client read %q through expose; want its echo", got)
			}
			// End as a plain client does, and wait for the DP to end the
			// connection: the service then sees a clean end, not a cut.
			p.send('4', fmt.Sprintf(`{"X":%d,"R":"bye"}`, int64(x)))
			io.Copy(io.Discard, p.br)
		})
	}
}
