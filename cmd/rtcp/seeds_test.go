package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"rtcp"
	"rtcp/c8y"
	"rtcp/internal/flowtest"
	wire "rtcp/protocol/cccp"
)

// plainEcho runs a TCP echo server on loopback that ignores how its
// clients end (the seed wires have no half-close).
func plainEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flowtest.Echo(t, l)
	return l.Addr().String()
}

func echoThrough(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg := strings.Repeat("seed ", 50000)
	go c.Write([]byte(msg))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %v", err)
	}
}

// startDP runs "rtcp dp" in process with args and returns its stderr.
func startSeedDP(t *testing.T, args ...string) *lines {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := newLines()
	done := make(chan error, 1)
	go func() {
		done <- runDP(ctx, append([]string{"-listen", "127.0.0.1:0", "-log-level", "warn"}, args...), io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dp: %v", err)
		}
	})
	return stderr
}

func seedFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestDPSeedFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-cccp-api", "127.0.0.1:0"}, "together"},
		{[]string{"-cccp-api", "127.0.0.1:0", "-cccp-devices", "127.0.0.1:0", "-cccp-ports", "9-1"}, "want LO-HI"},
		{[]string{"-cccp-api", "127.0.0.1:0", "-cccp-devices", "127.0.0.1:0", "-cccp-ports", "x"}, "want LO-HI"},
		{[]string{"-cccp-host", "h"}, "need -cccp-api"},
		{[]string{"-c8y-token-file", "f"}, "need -c8y-listen"},
		{[]string{"-c8y-listen", "127.0.0.1:0", "-c8y-cert", "c"}, "together"},
		{[]string{"-c8y-server-key", "alice"}, "needs -c8y-listen"},
		{[]string{"-c8y-listen", "127.0.0.1:0", "-c8y-max-keys", "0"}, "at least 1"},
		{[]string{"-cccp-key", "alice"}, "need -cccp-api"},
		{[]string{"-c8y-listen", "127.0.0.1:0", "-c8y-server-key", "alice"}, "give -config"},
		{[]string{"-mihini-key", "alice"}, "give -config"},
		{[]string{"-config", policyFile(t), "-mihini-key", "bob"}, `"bob" is not a key of the policy`},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{"dp", "-listen", "127.0.0.1:0"}, c.args...), io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("dp %q: status %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"c8y-agent", "-url", "ws://x"}, "-ops is required"},
		{[]string{"c8y-agent", "-url", "ws://x", "-ops", "-", "-user", "t/u"}, "together"},
		{[]string{"c8y-agent", "-url", "ws://x", "-ops", "-", "-user", "t/u", "-password-file", "p", "-token-file", "t"}, "not both"},
		{[]string{"c8y-agent", "-url", "ws://x", "-ops", "-", "-status", "xml"}, "smartrest or text"},
		{[]string{"cccp-device", "-proxy", "h:1", "-serial", "bad\tserial", "-to", "h:2"}, "control character"},
		{[]string{"cccp-device", "-proxy", "h:1", "-to", "h:2"}, "-serial is required"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: status %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// "rtcp dp -c8y-listen" and "rtcp c8y-agent": a key from the DP's API,
// the operation to the agent through a file, a client through the DP.
func TestC8yCommands(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("keys-token\n"), 0o600)
	stderr := startSeedDP(t, "-c8y-listen", "127.0.0.1:0", "-c8y-token-file", tokFile)
	web := stderr.wait(t, logRe("rtcp dp: remote access and rtcp over WebSocket", "addr"))
	dp := stderr.wait(t, logRe("rtcp dp: listening", "addr"))

	svc := plainEcho(t)
	host, port, _ := net.SplitHostPort(svc)
	req, _ := http.NewRequest("POST", "http://"+web+c8y.KeysPath+"?name=lab-vnc&host="+host+"&port="+port, nil)
	req.Header.Set("Authorization", "Bearer keys-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var kr c8y.KeyResponse
	json.NewDecoder(resp.Body).Decode(&kr)
	resp.Body.Close()
	if resp.StatusCode != 201 || kr.Operation == "" {
		t.Fatalf("create key: %d %+v", resp.StatusCode, kr)
	}
	ops := filepath.Join(dir, "ops")
	os.WriteFile(ops, []byte(kr.Operation+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "device-token"), []byte("device-token"), 0o600)

	stdout := newLines()
	agentDone := make(chan int, 1)
	go func() {
		agentDone <- run(context.Background(), []string{"c8y-agent", "-url", "http://" + web,
			"-token-file", filepath.Join(dir, "device-token"), "-ops", ops, "-log-level", "warn"}, stdout, io.Discard)
	}()
	// SmartREST, the agent's default: the operation has no id.
	stdout.wait(t, regexp.MustCompile(`^(501),c8y_RemoteAccessConnect$`))
	stdout.wait(t, regexp.MustCompile(`^(503),c8y_RemoteAccessConnect$`))

	c, err := rtcp.Dial(dp, "lab-vnc")
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)
	select {
	case code := <-agentDone:
		if code != 0 {
			t.Fatalf("c8y-agent exit status %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("c8y-agent did not end after its only tunnel and the end of its operations")
	}
}

// "rtcp expose" and "rtcp connect" with -dp ws://...: rtcp links over the
// DP's WebSocket endpoint.
func TestExposeOverWebSocket(t *testing.T) {
	stderr := startSeedDP(t, "-c8y-listen", "127.0.0.1:0")
	web := stderr.wait(t, logRe("rtcp dp: remote access and rtcp over WebSocket", "addr"))
	mustLaunch(t, runExpose, "-dp", "ws://"+web+"/rtcp", "-name", "printer", "-to", plainEcho(t), "-log-level", "warn")
	conn := mustLaunch(t, runConnect, "-dp", "ws://"+web, "-name", "printer", "-listen", "127.0.0.1:0", "-log-level", "warn")
	c, err := net.Dial("tcp", conn.addr)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)
}

// "rtcp dp -cccp-..." and "rtcp cccp-device".
func TestCCCPCommands(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("api-token"), 0o600)
	port := seedFreePort(t)
	stderr := startSeedDP(t, "-cccp-api", "127.0.0.1:0", "-cccp-devices", "127.0.0.1:0",
		"-cccp-ports", strconv.Itoa(port)+"-"+strconv.Itoa(port), "-cccp-host", "127.0.0.1", "-cccp-token-file", tokFile)
	m := regexp.MustCompile(`msg="rtcp dp: CCCP doors" devices=(\S+) api=(\S+)`)
	var devices, api string
	for devices == "" {
		select {
		case l := <-stderr.ch:
			if s := m.FindStringSubmatch(l); s != nil {
				devices, api = s[1], s[2]
			}
		case <-time.After(time.Minute):
			t.Fatal("dp did not start CCCP")
		}
	}
	devCtx, stopDev := context.WithCancel(context.Background())
	devOut := newLines()
	devDone := make(chan error, 1)
	go func() {
		devDone <- runCCCPDevice(devCtx, []string{"-proxy", devices, "-serial", "CLD-123456", "-to", plainEcho(t), "-log-level", "warn"}, io.Discard, devOut)
	}()
	defer func() {
		stopDev()
		if err := <-devDone; err != nil {
			t.Errorf("cccp-device: %v", err)
		}
	}()
	devOut.wait(t, logRe("rtcp cccp-device: serving", "to"))

	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+api+path, nil)
		req.Header.Set("Authorization", "Bearer api-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("/on?serial=CLD-123456&persistent=true")
	var on wire.OnResponse
	if code != 200 || json.Unmarshal(body, &on) != nil || on.Port != port || on.Host != "127.0.0.1" {
		t.Fatalf("/on: %d %s", code, body)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, body := get("/status?serial=CLD-123456")
		var st wire.StatusResponse
		json.Unmarshal(body, &st)
		if st.DeviceConnected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the device did not register")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := net.Dial("tcp", net.JoinHostPort(on.Host, strconv.Itoa(on.Port)))
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c)
	if code, body := get("/on?serial=OTHER"); code != 503 || !strings.Contains(string(body), "No available ports") {
		t.Fatalf("/on with the only port in use: %d %s", code, body)
	}
	if code, _ := get("/off?serial=CLD-123456"); code != 200 {
		t.Fatalf("/off: %d", code)
	}
}

// policyFile writes a -config policy with the key alice and returns its
// path.
func policyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dp.json")
	if err := os.WriteFile(p, []byte(`{"keys": {"alice": "`+strings.Repeat("ab", 32)+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
