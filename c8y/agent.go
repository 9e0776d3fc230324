package c8y

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"rtcp/internal/readahead"
	"rtcp/internal/relay"
	wire "rtcp/protocol/c8y"
	"rtcp/wsconn"
)

// An Agent is the device side of Cumulocity remote access: for each
// c8y_RemoteAccessConnect operation it opens a tunnel between a TCP
// endpoint on its network and the cloud's (or a DP's) device WebSocket.
// The zero value needs a URL; every other field has a working default.
type Agent struct {
	// URL is the base URL of the tenant or DP, e.g.
	// https://t123.cumulocity.com or ws://dp.example.com:8080; the agent
	// dials URL + /service/remoteaccess/device/<key>. http and https mean
	// ws and wss.
	URL string

	// User and Password give Basic authorization; for Cumulocity User is
	// "<tenant>/<user>".
	User, Password string

	// Token gives Bearer authorization instead of User and Password.
	Token string

	// HTTPClient makes the WebSocket's opening handshake (TLS settings,
	// proxies). Nil means http.DefaultClient.
	HTTPClient *http.Client

	// Dial opens the TCP connection to the operation's endpoint. Nil means
	// a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// ConnectTimeout bounds setting up a tunnel (the TCP connection and
	// the WebSocket, dialled at the same time). Default 30 s.
	ConnectTimeout time.Duration

	// BufferSize bounds, per direction, what is read ahead from one side
	// of a tunnel while the other is still being set up or is slow.
	// Default 64 KiB.
	BufferSize int

	// Status receives a line each time an operation changes status:
	// EXECUTING, then SUCCESSFUL or FAILED, in the form StatusFormat says,
	// with "\n". Each line is one Write. Nil discards them.
	Status io.Writer

	// StatusFormat is the form of the lines written to Status. The zero
	// value is StatusSmartREST.
	StatusFormat StatusFormat

	// Logger receives logs of tunnels opened and closed. Nil is silent.
	Logger *slog.Logger

	mu sync.Mutex // serializes Status writes
}

// A StatusFormat is a form of the status lines an Agent writes.
type StatusFormat int

const (
	// StatusSmartREST writes SmartREST, which Cumulocity understands
	// (protocol/c8y SPEC.md §2): an operation that came as JSON with an
	// "id" is answered by that ID as the C reference agent answers it,
	//
	//	303,<id>,EXECUTING
	//	303,<id>,SUCCESSFUL
	//	304,<id>,"<reason>"
	//
	// and any other (a SmartREST 530 line) with the MQTT static templates
	// that thin-edge's mapper publishes,
	//
	//	501,c8y_RemoteAccessConnect
	//	503,c8y_RemoteAccessConnect
	//	502,c8y_RemoteAccessConnect,"<reason>"
	StatusSmartREST StatusFormat = iota

	// StatusText writes readable lines (protocol/c8y StatusLine) that
	// name the operation by its connection key:
	//
	//	EXECUTING <key>
	//	SUCCESSFUL <key>
	//	FAILED <key> <reason>
	StatusText
)

// MaxOperationLine is the longest operation Serve reads, in bytes; a JSON
// operation may span several lines.
const MaxOperationLine = 1 << 20

func (a *Agent) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func (a *Agent) report(op wire.Operation, st wire.Status, reason string) {
	if a.Status == nil {
		return
	}
	var line string
	switch {
	case a.StatusFormat == StatusText:
		line = wire.StatusLine(st, op.Key, reason)
	case op.ID != "":
		line = wire.SmartRESTStatusID(op.ID, st, reason)
	default:
		line = wire.SmartRESTStatus(st, reason)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	io.WriteString(a.Status, line+"\n")
}

// keyHint names a connection key in logs without giving it away: the
// key is a credential until its WebSocket is open, and after that it is
// still the name of a device's tunnel.
func keyHint(key string) string {
	if len(key) < 16 {
		return "…"
	}
	return key[:8] + "…"
}

// redactKey hides key in err's text (a WebSocket URL holds it) and keeps
// err for errors.Is and errors.As.
func redactKey(err error, key string) error {
	if err == nil || key == "" {
		return err
	}
	return &redactedError{err: err, key: key}
}

type redactedError struct {
	err error
	key string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, k := range []string{url.PathEscape(e.key), e.key} {
		msg = strings.ReplaceAll(msg, k, keyHint(e.key))
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

// Handle carries out one operation: it reports EXECUTING, dials the TCP
// endpoint op.Host:op.Port and the device WebSocket for op.Key at the same
// time, and reports SUCCESSFUL once both are up or FAILED with the reason.
// It then copies bytes both ways until either side ends, which ends both,
// or ctx ends. It returns the error that failed the tunnel's setup or cut
// it, and nil for a tunnel that ended cleanly.
//
// The connection key appears in no log and no error text: logs name it by
// its first characters only.
func (a *Agent) Handle(ctx context.Context, op wire.Operation) error {
	a.report(op, wire.StatusExecuting, "")
	tcp, ws, err := a.connect(ctx, op)
	if err != nil {
		err = redactKey(err, op.Key)
		a.report(op, wire.StatusFailed, err.Error())
		a.log().Info("c8y: tunnel failed", "endpoint", endpoint(op), "key", keyHint(op.Key), "err", err)
		return err
	}
	a.report(op, wire.StatusSuccessful, "")
	a.log().Info("c8y: tunnel open", "endpoint", endpoint(op), "key", keyHint(op.Key))
	stop := context.AfterFunc(ctx, func() {
		tcp.Close()
		ws.Close()
	})
	defer stop()
	st, err := relay.Join(tcp, ws, nil)
	err = redactKey(err, op.Key)
	if relay.Cut(err) && ctx.Err() == nil {
		a.log().Warn("c8y: tunnel cut", "endpoint", endpoint(op), "key", keyHint(op.Key), "to_websocket", st.AtoB, "to_tcp", st.BtoA, "reason", err)
		return err
	}
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	a.log().Info("c8y: tunnel closed", "endpoint", endpoint(op), "key", keyHint(op.Key), "to_websocket", st.AtoB, "to_tcp", st.BtoA, "err", err)
	return err
}

func endpoint(op wire.Operation) string {
	return net.JoinHostPort(op.Host, strconv.Itoa(op.Port))
}

// connect dials both sides of a tunnel at the same time. Each side is read
// ahead from the moment it is up, so that what it sends while the other
// is being set up is kept.
func (a *Agent) connect(ctx context.Context, op wire.Operation) (tcp, ws net.Conn, err error) {
	u, err := a.deviceURL(op.Key)
	if err != nil {
		return nil, nil, err
	}
	timeout := a.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	type result struct {
		c   net.Conn
		err error
	}
	tcpc, wsc := make(chan result, 1), make(chan result, 1)
	go func() {
		c, err := a.dialTCP(ctx, endpoint(op))
		if err != nil {
			cancel()
			tcpc <- result{err: fmt.Errorf("c8y: cannot connect to the endpoint %s: %w", endpoint(op), err)}
			return
		}
		tcpc <- result{c: readahead.New(c, nil, a.BufferSize)}
	}()
	go func() {
		d := wsconn.Dialer{Header: a.header(), Subprotocol: wire.Subprotocol, HTTPClient: a.HTTPClient}
		c, err := d.DialURL(ctx, u)
		if err != nil {
			cancel()
			wsc <- result{err: fmt.Errorf("c8y: cannot open the remote access WebSocket: %w", err)}
			return
		}
		wsc <- result{c: readahead.New(c, nil, a.BufferSize)}
	}()
	rt, rw := <-tcpc, <-wsc
	if rt.err == nil && rw.err == nil {
		return rt.c, rw.c, nil
	}
	if rt.c != nil {
		rt.c.Close()
	}
	if rw.c != nil {
		rw.c.Close()
	}
	// A side that failed first cancelled the other: report the cause, not
	// the cancellation.
	switch {
	case rt.err != nil && rw.err != nil && errors.Is(rw.err, context.Canceled):
		return nil, nil, rt.err
	case rt.err != nil && rw.err != nil && errors.Is(rt.err, context.Canceled):
		return nil, nil, rw.err
	case rt.err != nil && rw.err != nil:
		return nil, nil, fmt.Errorf("%v; and %v", rt.err, rw.err)
	case rt.err != nil:
		return nil, nil, rt.err
	}
	return nil, nil, rw.err
}

func (a *Agent) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if a.Dial != nil {
		return a.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// deviceURL is the device WebSocket of the operation with key.
func (a *Agent) deviceURL(key string) (string, error) {
	u, err := url.Parse(a.URL)
	if err != nil || a.URL == "" {
		return "", fmt.Errorf("c8y: the agent's URL %q is not a URL like https://t123.cumulocity.com", a.URL)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("c8y: the agent's URL %q has scheme %q; want https, wss, http or ws", a.URL, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("c8y: the agent's URL %q has no host", a.URL)
	}
	return strings.TrimSuffix(u.String(), "/") + wire.DevicePath(key), nil
}

// header is the opening handshake's Authorization.
func (a *Agent) header() http.Header {
	switch {
	case a.Token != "":
		return http.Header{"Authorization": {"Bearer " + a.Token}}
	case a.User != "":
		cred := base64.StdEncoding.EncodeToString([]byte(a.User + ":" + a.Password))
		return http.Header{"Authorization": {"Basic " + cred}}
	}
	return nil
}

// Serve reads operations from ops (JSON, which may span lines, or
// SmartREST 530 lines; protocol/c8y SplitOperations) and handles each in a
// goroutine of its own. An operation that is not a c8y_RemoteAccessConnect
// is logged and skipped; a bad one is reported EXECUTING and FAILED at
// once, by its ID where it has one; input that is no operation at all
// (invalid JSON, say) is logged and gets no status, since no operation
// can be named for it. Serve returns when ops is exhausted and every
// tunnel has ended, or when ctx ends (which ends the tunnels); the error
// is that of reading ops. A Read of ops that is blocked when ctx ends is
// left to return on its own, and what it returns is dropped: close ops to
// end it.
func (a *Agent) Serve(ctx context.Context, ops io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tokens := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(ops)
		sc.Buffer(make([]byte, 4096), MaxOperationLine)
		sc.Split(wire.SplitOperations)
		for sc.Scan() {
			select {
			case tokens <- bytes.Clone(sc.Bytes()):
			case <-ctx.Done():
				readErr <- nil
				return
			}
		}
		err := sc.Err()
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("c8y: an operation is longer than %d bytes; is a JSON operation missing its closing brace?", MaxOperationLine)
		}
		readErr <- err
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var token []byte
		select {
		case token = <-tokens:
		case err := <-readErr:
			wg.Wait()
			return err
		case <-ctx.Done():
			return nil
		}
		op, err := wire.ParseOperation(token)
		switch {
		case errors.Is(err, wire.ErrNotRemoteAccess):
			a.log().Info("c8y: skipped an operation that is not c8y_RemoteAccessConnect", "err", err)
		case errors.Is(err, wire.ErrNotOperation):
			a.log().Warn("c8y: skipped input that is no operation; no status reported", "err", err)
		case err != nil:
			a.report(op, wire.StatusExecuting, "")
			a.report(op, wire.StatusFailed, err.Error())
			a.log().Info("c8y: bad operation", "id", op.ID, "err", err)
		default:
			wg.Go(func() { a.Handle(ctx, op) })
		}
	}
}
