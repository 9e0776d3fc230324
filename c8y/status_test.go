package c8y_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"rtcp/c8y"
	"rtcp/internal/flowtest"
	wire "rtcp/protocol/c8y"
)

// jsonOp is a JSON operation for op with the given id ("" for none),
// pretty-printed as in the documentation's example.
func jsonOp(id string, op wire.Operation) string {
	idLine := ""
	if id != "" {
		idLine = `"id" : "` + id + `",` + "\n"
	}
	return "{\n" + idLine + `"deviceId" : "10200",
"c8y_RemoteAccessConnect": {
"hostname": "` + op.Host + `",
"port": ` + strconv.Itoa(op.Port) + `,
"connectionKey": "` + op.Key + `"
},
"description": "Connect to remote access server"
}`
}

// By default the agent reports in SmartREST: by ID (303/304, as the C
// reference agent) for a JSON operation with an "id", by fragment
// (501/503/502, as thin-edge) for any other.
func TestAgentSmartREST(t *testing.T) {
	for _, tt := range []struct {
		name, id      string
		json          bool
		executing, ok string
		failed        string
	}{
		{"SmartREST 530", "", false, "501,c8y_RemoteAccessConnect\n", "503,c8y_RemoteAccessConnect\n",
			`502,c8y_RemoteAccessConnect,"c8y: cannot connect to the endpoint 127.0.0.1:`},
		{"JSON without id", "", true, "501,c8y_RemoteAccessConnect\n", "503,c8y_RemoteAccessConnect\n",
			`502,c8y_RemoteAccessConnect,"c8y: cannot connect to the endpoint 127.0.0.1:`},
		{"JSON with id", "4711", true, "303,4711,EXECUTING\n", "303,4711,SUCCESSFUL\n",
			`304,4711,"c8y: cannot connect to the endpoint 127.0.0.1:`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCloud(t, "Bearer t")
			l, op := service(t)
			in := "530,dev,127.0.0.1," + strconv.Itoa(op.Port) + "," + testKey + "\n"
			if tt.json {
				in = jsonOp(tt.id, op) + "\n"
			}
			st := newLines()
			a := &c8y.Agent{URL: cl.srv.URL, Token: "t", Status: st}
			served := make(chan error, 1)
			go func() { served <- a.Serve(context.Background(), strings.NewReader(in)) }()
			tcp := accept(t, l)
			ws := recv(t, cl.conns)
			st.want(t, tt.executing, tt.ok)
			ws.Close()
			wantEnd(t, tcp, "endpoint")
			if err := <-served; err != nil {
				t.Fatalf("Serve = %v", err)
			}

			// The same operation fails once the endpoint is gone.
			l.Close()
			stop, drained := make(chan struct{}), make(chan struct{})
			go func() {
				// A WebSocket that came up meanwhile is closed again.
				defer close(drained)
				select {
				case ws := <-cl.conns:
					io.Copy(io.Discard, ws)
					ws.Close()
				case <-stop:
				}
			}()
			err := a.Serve(context.Background(), strings.NewReader(in))
			close(stop)
			<-drained
			if err != nil {
				t.Fatalf("Serve = %v", err)
			}
			st.want(t, tt.executing, tt.failed)
			st.none(t)
		})
	}
}

// The seed's operation is pretty-printed JSON: the agent reads it whole,
// between SmartREST lines, and with a byte order mark in front.
func TestAgentServeMultiLine(t *testing.T) {
	cl := newCloud(t, "Bearer t")
	l, op := service(t)
	st := newLines()
	a := &c8y.Agent{URL: cl.srv.URL, Token: "t", Status: st}
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- a.Serve(context.Background(), pr) }()

	io.WriteString(pw, "\uFEFF510,DeviceSerial\r\n\r\n")
	// Written a line at a time, as a pipe from a slow producer delivers it.
	for _, line := range strings.SplitAfter(jsonOp("", op)+"\n", "\n") {
		io.WriteString(pw, line)
	}
	tcp := accept(t, l)
	ws := recv(t, cl.conns)
	st.want(t, "501,c8y_RemoteAccessConnect\n", "503,c8y_RemoteAccessConnect\n")
	ws.Write([]byte("hi"))
	if readN(t, tcp, 2) != "hi" {
		t.Fatal("no data through the tunnel")
	}
	pw.Close()
	tcp.Close()
	wantEnd(t, ws, "cloud")
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// A bad c8y_RemoteAccessConnect is failed at once, by its ID when it has
// one, so that it does not stay PENDING; input that is no operation gets
// no status, since a 502 would fail another tunnel's operation.
func TestAgentServeBadOperations(t *testing.T) {
	logs, logger := flowtest.NewLogs()
	st := newLines()
	a := &c8y.Agent{URL: "ws://127.0.0.1:1", Status: st, Logger: logger}
	in := strings.Join([]string{
		"530,dev,127.0.0.1,70000,k2",
		`{"id":"12","c8y_RemoteAccessConnect":{"hostname":"h","port":"ssh","connectionKey":"k"}}`,
		"hello, no operation",
		`{"c8y_RemoteAccessConnect": }`,
		`{"id":"13","c8y_Restart":{}}`,
		`{"c8y_RemoteAccessConnect":{"hostname":"h","port":0,"connectionKey":"k"}}`,
	}, "\n")
	if err := a.Serve(context.Background(), strings.NewReader(in)); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	st.want(t,
		"501,c8y_RemoteAccessConnect\n", `502,c8y_RemoteAccessConnect,"c8y: port 70000 is out of range`,
		"303,12,EXECUTING\n", `304,12,"c8y: port ""ssh"" is not a whole number`,
		"501,c8y_RemoteAccessConnect\n", `502,c8y_RemoteAccessConnect,"c8y: port 0 is out of range`)
	st.none(t)
	if skipped := logs.Find(slog.LevelWarn, "c8y: skipped input that is no operation; no status reported"); len(skipped) != 2 {
		t.Errorf("log %v does not tell of the two inputs that are no operation", logs.AtLeast(slog.LevelDebug))
	}
}

// The connection key is a credential until its WebSocket is open: the
// agent's logs and SmartREST reasons do not show it.
func TestAgentKeyNotShown(t *testing.T) {
	cl := newCloud(t, "Bearer right")
	cl.before = make(chan struct{}) // the refusal comes once the endpoint is up
	l, op := service(t)
	var logs syncBuffer
	st := newLines()
	a := &c8y.Agent{URL: cl.srv.URL, Token: "wrong", Status: st,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	done := handle(a, op)
	tcp := accept(t, l)
	close(cl.before)
	wait(t, done)
	wantEnd(t, tcp, "endpoint after the WebSocket was refused")
	failed := st.want(t, "501,", `502,c8y_RemoteAccessConnect,"c8y: cannot open the remote access WebSocket: wsconn: `)
	if strings.Contains(failed[1], testKey) || !strings.Contains(failed[1], testKey[:8]+"…") {
		t.Errorf("FAILED reason %q shows the key, or not even its start", failed[1])
	}

	// And a tunnel that opens and closes.
	a.Token = "right"
	done = handle(a, op)
	tcp = accept(t, l)
	recv(t, cl.conns).Close()
	wantEnd(t, tcp, "endpoint")
	wait(t, done)
	st.want(t, "501,", "503,")

	if got := logs.String(); strings.Contains(got, testKey) || !strings.Contains(got, testKey[:8]+"…") {
		t.Errorf("the log shows the key, or not even its start:\n%s", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
