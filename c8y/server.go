package c8y

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rtcp"
	"rtcp/internal/mux"
	"rtcp/internal/readahead"
	wire "rtcp/protocol/c8y"
	"rtcp/wsconn"
)

// Paths of the Server's HTTP endpoints.
const (
	DevicePrefix = "/service/remoteaccess/device/" // + key: a device agent's WebSocket
	ClientPrefix = "/service/remoteaccess/client/" // + key: a client's WebSocket
	KeysPath     = "/service/remoteaccess/keys"    // POST: create a connection key
)

// Defaults and bounds of connection keys.
const (
	DefaultKeyTTL  = 5 * time.Minute
	MaxKeyTTL      = 24 * time.Hour
	DefaultMaxKeys = 1000 // Server.MaxKeys when zero
)

// Errors of the Server.
var (
	// ErrServerClosed is returned by NewKey after Close.
	ErrServerClosed = errors.New("c8y: remote access server closed")

	// ErrTooManyKeys is returned by NewKey when the Server holds MaxKeys
	// keys.
	ErrTooManyKeys = errors.New("c8y: too many connection keys")
)

// A Server is the cloud side of Cumulocity remote access, run by a DP, so
// that the device agent (Agent, or any agent written for Cumulocity) can
// be used with a self-hosted relay. It is an http.Handler with three
// endpoints:
//
//	POST /service/remoteaccess/keys?[name=N][&ttl=SEC][&host=H&port=P]  create a connection key
//	GET  /service/remoteaccess/device/<key>   WebSocket: the device agent's side of the tunnel
//	GET  /service/remoteaccess/client/<key>   WebSocket: a client's side of the tunnel
//
// The keys endpoint answers 201 with a KeyResponse, or with a JSON
// {"error": "..."}: 400 (bad parameters), 401 (no or a wrong Token, or
// not loopback without one), 403 (the DP's Policy gives the name to
// another key), 409 (another server holds the name), 503 (MaxKeys keys
// held, a bound of the DP, or closing).
//
// A connection key is single use and expires. While it is valid, its name
// (the key itself unless NewKey was given one) is a server at the DP, so
// that a client reaches the device by that name in any of the DP's ways:
// the client WebSocket above, rtcp.Dial(dp, name), or a port-mode port
// for the name. The first client pairs with the device and spends the key;
// a key that pairs no client by its expiry is dropped, and its device
// WebSocket closed.
//
// Each key's name is registered at the DP as a server's would be, under
// the DP's Policy (see Key), and the keys held at once are bounded
// (MaxKeys), since each holds a name.
//
// The zero value needs DP; Close ends what the Server holds.
type Server struct {
	// DP is the discover point that clients reach devices through.
	DP *rtcp.DiscoverPoint

	// KeyTTL is how long a key is valid when its creator does not say.
	// Default DefaultKeyTTL.
	KeyTTL time.Duration

	// Token protects the keys endpoint: a request must carry the header
	// "Authorization: Bearer <Token>". Empty means that only requests from
	// loopback addresses may create keys. The device and client endpoints
	// need no token: the secret, single-use key is their credential.
	Token string

	// Key is the key of the DP's Policy that this Server's names are
	// registered as (rtcp.DiscoverPoint.AddLinkAs), so that they obey the
	// Policy in force, one installed with SetPolicy included, as any
	// server's do: a name that a rule gives to Owners is refused unless
	// Key is one of them, and a key whose name the Policy no longer
	// allows is withdrawn at its next session. Empty means anonymous,
	// which a Policy admits only with AnonymousServers, and only for
	// names no rule gives to Owners. Without a Policy any free name may
	// be taken.
	//
	// Names of one key are one owner's: give the Server a key of its own,
	// or a connection key's name may join the links of another server of
	// Key that holds it.
	Key string

	// MaxKeys bounds the connection keys held at once: waiting for their
	// device or client, or carrying a tunnel. Each holds a name at the DP.
	// Zero means DefaultMaxKeys.
	MaxKeys int

	// Logger receives logs of keys and tunnels. Nil is silent. A key is
	// never logged whole, and neither is a name that is the key itself:
	// logs show their first 8 characters.
	Logger *slog.Logger

	mu     sync.Mutex
	keys   map[string]*connKey
	closed bool
	wg     sync.WaitGroup

	issued  atomic.Uint64
	refused [numRefusals]atomic.Uint64
}

// Reasons a Server refuses a request, as ServerStats counts them.
type refusal int

const (
	refusedUnauthorized refusal = iota // keys endpoint: no or a wrong token, or not loopback
	refusedBadRequest                  // keys endpoint: bad method or parameters
	refusedPolicy                      // the DP's Policy gives the name to another key
	refusedNameTaken                   // another server holds the name
	refusedMaxKeys                     // MaxKeys keys are held
	refusedDP                          // the DP refused the name otherwise (MaxNames, closing)
	refusedUnknownKey                  // device or client endpoint: unknown, used or expired key
	numRefusals
)

var refusalNames = [numRefusals]string{
	refusedUnauthorized: "unauthorized",
	refusedBadRequest:   "bad_request",
	refusedPolicy:       "policy",
	refusedNameTaken:    "name_taken",
	refusedMaxKeys:      "max_keys",
	refusedDP:           "dp",
	refusedUnknownKey:   "unknown_key",
}

// ServerStats are a Server's counts since it started, for metrics.
type ServerStats struct {
	Keys   int    // connection keys held now
	Issued uint64 // connection keys issued
	// Refused counts refused requests by reason: "unauthorized" (keys
	// endpoint without the token, or not from loopback when there is
	// none), "bad_request", "policy" (the DP's Policy gives the name to
	// another key), "name_taken", "max_keys" (MaxKeys keys held), "dp"
	// (the DP refused the name otherwise, e.g. MaxNames), "unknown_key"
	// (a device or client with an unknown, used or expired key).
	Refused map[string]uint64
}

// Stats returns the Server's counts.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	st := ServerStats{Keys: len(s.keys), Issued: s.issued.Load(), Refused: make(map[string]uint64, numRefusals)}
	s.mu.Unlock()
	for i := range s.refused {
		st.Refused[refusalNames[i]] = s.refused[i].Load()
	}
	return st
}

func (s *Server) maxKeys() int {
	if s.MaxKeys > 0 {
		return s.MaxKeys
	}
	return DefaultMaxKeys
}

// refuse counts a refusal and logs it.
func (s *Server) refuse(r refusal, msg string, args ...any) {
	s.refused[r].Add(1)
	s.log().Info(msg, append(args, "refusal", refusalNames[r])...)
}

// A Key is a connection key the Server issued.
type Key struct {
	Key     string    // the secret: the last segment of the WebSocket paths
	Name    string    // the server name clients reach the device by
	Expires time.Time // after this, a key that has paired no client is dropped
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// NewKey issues a connection key that is valid for ttl (zero means
// KeyTTL) and registers name (empty means the key itself) at the DP for
// it. It fails with an error matching rtcp.ErrBadName if name is not an
// rtcp.ValidDoorName, with ErrTooManyKeys if the Server holds MaxKeys
// keys, with an error matching rtcp.ErrUnauthorized if the DP's Policy
// does not let the Server register name (see Server.Key), and with one
// matching rtcp.ErrNameTaken if another server holds name.
func (s *Server) NewKey(name string, ttl time.Duration) (Key, error) {
	if s.DP == nil {
		return Key{}, errors.New("c8y: Server.DP is nil; give the Server a DiscoverPoint")
	}
	if ttl <= 0 {
		ttl = s.KeyTTL
	}
	if ttl <= 0 {
		ttl = DefaultKeyTTL
	}
	id := newKeyID()
	if name == "" {
		name = id
	} else if err := rtcp.ValidDoorName(name); err != nil {
		s.refuse(refusedBadRequest, "c8y: key refused", "reason", err)
		return Key{}, fmt.Errorf("c8y: the name of a key: %w", err)
	}
	k := &connKey{
		s:       s,
		id:      id,
		name:    name,
		expires: time.Now().Add(ttl),
		device:  make(chan *readahead.Conn, 1),
		arrived: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Key{}, ErrServerClosed
	}
	if n := len(s.keys); n >= s.maxKeys() {
		s.mu.Unlock()
		s.refuse(refusedMaxKeys, "c8y: key refused", "name", k.logName(), "keys", n)
		return Key{}, fmt.Errorf("c8y: this DP holds %d connection keys, its limit (MaxKeys); retry when one has been used or has expired: %w", n, ErrTooManyKeys)
	}
	if s.nameHeldLocked(name) {
		// The DP would take a second key of one Key into the name's
		// rotation, and a client of one key could pair with the device of
		// the other.
		s.mu.Unlock()
		err := fmt.Errorf("c8y: the name %q is held by another server at the DP (a connection key of this remote access server); "+
			"choose another name or wait until it is free: %w", name, rtcp.ErrNameTaken)
		s.refuse(refusedNameTaken, "c8y: key refused", "name", k.logName(), "reason", err)
		return Key{}, err
	}
	if s.keys == nil {
		s.keys = make(map[string]*connKey)
	}
	s.keys[id] = k
	s.mu.Unlock()
	// The owner counts only for an anonymous Server: with a Key, the DP
	// registers the name as the key's.
	remove, err := s.DP.AddLinkAs(s.Key, name, "c8y-key:"+id, k)
	if err != nil {
		s.mu.Lock()
		delete(s.keys, id)
		s.mu.Unlock()
		// The DP's reasons may name the name, which may be the key.
		reason := redactKey(err, id)
		switch {
		case errors.Is(err, rtcp.ErrUnauthorized):
			s.refuse(refusedPolicy, "c8y: key refused", "name", k.logName(), "reason", reason)
			return Key{}, fmt.Errorf("c8y: the DP's Policy does not let this remote access server (Server.Key %q) register %q: %w", s.Key, name, err)
		case errors.Is(err, rtcp.ErrNameTaken):
			s.refuse(refusedNameTaken, "c8y: key refused", "name", k.logName(), "reason", reason)
			return Key{}, fmt.Errorf("c8y: the name %q is held by another server at the DP; choose another name or wait until it is free: %w", name, err)
		}
		s.refuse(refusedDP, "c8y: key refused", "name", k.logName(), "reason", reason)
		return Key{}, err
	}
	k.mu.Lock()
	k.remove = remove
	k.timer = time.AfterFunc(ttl, k.expire)
	k.mu.Unlock()
	s.issued.Add(1)
	s.log().Info("c8y: key issued", "name", k.logName(), "expires", k.expires)
	return Key{Key: id, Name: name, Expires: k.expires}, nil
}

// nameHeldLocked reports whether one of the Server's keys holds name.
// Call with s.mu held.
func (s *Server) nameHeldLocked(name string) bool {
	for _, k := range s.keys {
		if k.name == name {
			return true
		}
	}
	return false
}

// logName is the key's name as logs show it: a name that is the key
// itself is a secret.
func (k *connKey) logName() string {
	if k.name == k.id {
		return keyHint(k.id)
	}
	return k.name
}

// newKeyID returns a random key in the form of Cumulocity's: a UUID.
func newKeyID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Close drops every key, closes every device WebSocket (tunnels in
// progress end), and waits for the Server's handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	keys := s.keys
	s.keys = nil
	s.mu.Unlock()
	for _, k := range keys {
		k.end("the server is closing")
	}
	s.wg.Wait()
	return nil
}

func (s *Server) lookup(id string) *connKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[id]
}

// begin counts a handler; false once the Server is closed.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// ServeHTTP serves the keys, device and client endpoints; any other path
// is answered 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.begin() {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{"c8y: the remote access server is shutting down; retry later"})
		return
	}
	defer s.wg.Done()
	path := r.URL.EscapedPath()
	switch {
	case path == KeysPath:
		s.serveKeys(w, r)
	case strings.HasPrefix(path, DevicePrefix):
		s.serveDevice(w, r, path)
	case strings.HasPrefix(path, ClientPrefix):
		s.serveClient(w, r, path)
	default:
		writeJSON(w, http.StatusNotFound, errorBody{fmt.Sprintf("c8y: no endpoint %q; the endpoints are %s<key>, %s<key> and %s",
			path, DevicePrefix, ClientPrefix, KeysPath)})
	}
}

type errorBody struct {
	Error string `json:"error"`
}

// KeyResponse is the JSON body of the keys endpoint's 201 answer.
type KeyResponse struct {
	Key        string    `json:"key"`
	Name       string    `json:"name"`
	Expires    time.Time `json:"expires"`
	DevicePath string    `json:"device_path"`
	ClientPath string    `json:"client_path"`
	// Operation is the SmartREST 530 line that tells an agent to open the
	// tunnel, when host and port were given.
	Operation string `json:"operation,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// serveKeys creates a key: POST /service/remoteaccess/keys with the
// parameters name, ttl (seconds), host and port in the query or a form.
func (s *Server) serveKeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuse(refusedBadRequest, "c8y: keys request refused", "remote", r.RemoteAddr, "method", r.Method)
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{"c8y: create a key with POST " + KeysPath})
		return
	}
	if !s.authorized(r) {
		s.refuse(refusedUnauthorized, "c8y: keys request refused", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="rtcp c8y keys"`)
		msg := "c8y: creating keys needs the header Authorization: Bearer <token>"
		if s.Token == "" {
			msg = "c8y: this DP has no key token, so only loopback clients may create keys"
		}
		writeJSON(w, http.StatusUnauthorized, errorBody{msg})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		s.refuse(refusedBadRequest, "c8y: keys request refused", "remote", r.RemoteAddr, "reason", err)
		writeJSON(w, http.StatusBadRequest, errorBody{"c8y: bad parameters: " + err.Error()})
		return
	}
	req, err := parseKeyRequest(r.Form)
	if err != nil {
		s.refuse(refusedBadRequest, "c8y: keys request refused", "remote", r.RemoteAddr, "reason", err)
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	k, err := s.NewKey(req.name, req.ttl)
	switch {
	case errors.Is(err, rtcp.ErrBadName):
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	case errors.Is(err, rtcp.ErrNameTaken):
		writeJSON(w, http.StatusConflict, errorBody{err.Error()})
		return
	case errors.Is(err, rtcp.ErrUnauthorized):
		writeJSON(w, http.StatusForbidden, errorBody{err.Error()})
		return
	case err != nil:
		// Closing, MaxKeys, or a bound of the DP (MaxNames): for now.
		writeJSON(w, http.StatusServiceUnavailable, errorBody{err.Error()})
		return
	}
	resp := KeyResponse{Key: k.Key, Name: k.Name, Expires: k.Expires.UTC().Truncate(time.Second),
		DevicePath: wire.DevicePath(k.Key), ClientPath: ClientPrefix + pathEscape(k.Key)}
	if req.host != "" {
		resp.Operation = smartREST530(k.Name, req.host, req.port, k.Key)
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.Token == "" {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		return err == nil && ap.Addr().Unmap().IsLoopback()
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) == 1
}

type keyRequest struct {
	name, host string
	port       int
	ttl        time.Duration
}

// parseKeyRequest reads the keys endpoint's parameters. host and port are
// checked by building the operation they make and parsing it back.
func parseKeyRequest(v map[string][]string) (keyRequest, error) {
	var req keyRequest
	for name, vals := range v {
		switch name {
		case "name", "ttl", "host", "port":
		default:
			return req, fmt.Errorf("c8y: unknown parameter %q; the keys endpoint takes name, ttl, host and port", name)
		}
		if len(vals) > 1 {
			return req, fmt.Errorf("c8y: parameter %s is given %d times; give it once", name, len(vals))
		}
	}
	get := func(name string) (string, bool) {
		vals, ok := v[name]
		if !ok {
			return "", false
		}
		return vals[0], true
	}
	if name, ok := get("name"); ok {
		// A name must be one clean word, as a key is.
		if _, valid := wire.ParseDevicePath(wire.DevicePath(name)); !valid {
			return req, fmt.Errorf("c8y: name=%q is not 1 to 1024 bytes of text without spaces or control characters", cut(name))
		}
		req.name = name
	}
	if ttl, ok := get("ttl"); ok {
		sec, err := strconv.ParseUint(ttl, 10, 32)
		if err != nil || sec == 0 || time.Duration(sec)*time.Second > MaxKeyTTL {
			return req, fmt.Errorf("c8y: ttl=%q is not a whole number of seconds from 1 to %d", cut(ttl), int(MaxKeyTTL/time.Second))
		}
		req.ttl = time.Duration(sec) * time.Second
	}
	host, hasHost := get("host")
	port, hasPort := get("port")
	if hasHost != hasPort {
		return req, errors.New("c8y: give host and port together, for the operation to send to the agent, or neither")
	}
	if hasHost {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return req, fmt.Errorf("c8y: port=%q is not a port number from 1 to 65535", cut(port))
		}
		req.port = int(p)
		op, err := wire.ParseOperation([]byte(smartREST530("", host, req.port, "k")))
		if err != nil {
			return req, fmt.Errorf("c8y: host=%q cannot be sent to an agent: %v", cut(host), err)
		}
		req.host = op.Host
	}
	return req, nil
}

func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// smartREST530 is the SmartREST line of a c8y_RemoteAccessConnect
// operation, fields quoted.
func smartREST530(externalID, host string, port int, key string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	return "530," + q(externalID) + "," + q(host) + "," + strconv.Itoa(port) + "," + q(key)
}

// pathEscape escapes a key as DevicePath does.
func pathEscape(key string) string {
	return strings.TrimPrefix(wire.DevicePath(key), DevicePrefix)
}

// keyFromPath returns the key of a device or client endpoint path.
func keyFromPath(path, prefix string) (string, bool) {
	return wire.ParseDevicePath(DevicePrefix + strings.TrimPrefix(path, prefix))
}

// maxDeviceMessage is the longest WebSocket message the Server writes to
// a device: the C reference agent misreads longer ones. The relay's
// chunks of up to 256 KiB are written as several messages.
const maxDeviceMessage = 1<<15 - 1

// serveDevice takes a device agent's WebSocket for its key and holds it
// until a client pairs with it and the tunnel ends, or the key expires.
func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request, path string) {
	id, ok := keyFromPath(path, DevicePrefix)
	var k *connKey
	if ok {
		k = s.lookup(id)
	}
	if k == nil {
		s.refuse(refusedUnknownKey, "c8y: device refused", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusNotFound, errorBody{"c8y: unknown or expired connection key; ask for a new operation"})
		return
	}
	if !k.takeDeviceSlot() {
		writeJSON(w, http.StatusConflict, errorBody{"c8y: a device is already connected for this key; a key is single use"})
		return
	}
	// Take the device agents that the cloud takes, the Cumulocity C
	// reference agent among them: it offers no subprotocol, sends a
	// Sec-WebSocket-Key that is not 16 bytes of base64, and reads the high
	// byte of a 16-bit frame length through a signed char, so it misreads
	// messages of 32768 bytes or more (protocol/c8y SPEC.md §3).
	a := wsconn.Acceptor{Subprotocol: wire.Subprotocol, LenientKey: true, MaxMessage: maxDeviceMessage}
	c, err := a.Accept(w, r)
	if err != nil {
		k.releaseDeviceSlot()
		return
	}
	dc := readahead.New(c, nil, 0)
	// Until a client claims it, nobody reads the device: keep reading (a
	// device that closes is noticed, and its connection released) and end
	// one that sends more than the read-ahead holds (readahead.Limit).
	dc.SetMode(readahead.Limit)
	s.log().Info("c8y: device connected", "name", k.logName(), "remote", r.RemoteAddr)
	k.device <- dc
	close(k.arrived)
	select {
	case <-dc.Done(): // the device went away, or whoever held it closed it
	case <-k.done: // dropped before a client paired
	}
	if !k.isClaimed() {
		k.end("the device left before a client came")
	}
	// A device the DP is relaying is closed by the relay when the tunnel
	// ends; wait for that, so the handler outlives its connection.
	<-k.done
	dc.Close()
}

// serveClient takes a client's WebSocket for a key, waits for the device
// and carries the client to it through the DP.
func (s *Server) serveClient(w http.ResponseWriter, r *http.Request, path string) {
	id, ok := keyFromPath(path, ClientPrefix)
	var k *connKey
	if ok {
		k = s.lookup(id)
	}
	if k == nil || k.isClaimed() {
		s.refuse(refusedUnknownKey, "c8y: client refused", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusNotFound, errorBody{"c8y: unknown, used or expired connection key"})
		return
	}
	c, err := wsconn.Accept(w, r, wire.Subprotocol)
	if err != nil {
		return
	}
	cc := readahead.New(c, nil, 0)
	cc.SetMode(readahead.Limit) // as a device's, until its device is there
	select {
	case <-k.arrived:
	case <-k.done:
		cc.Close()
		return
	case <-cc.Done():
		cc.Close()
		return
	}
	cc.SetMode(readahead.Hold)
	s.log().Info("c8y: client connected", "name", k.logName(), "remote", r.RemoteAddr)
	if err := s.DP.Relay(cc, k.name, "c8y-client@"+r.RemoteAddr); err != nil {
		s.log().Info("c8y: client refused", "name", k.logName(), "err", redactKey(err, k.id))
	}
}

// A connKey is one connection key: a single-use Link for its name.
type connKey struct {
	s       *Server
	id      string
	name    string
	expires time.Time
	device  chan *readahead.Conn // the device's WebSocket, once it is there
	arrived chan struct{}        // closed when the device has connected
	done    chan struct{}        // closed when the key is dropped: the Link's Done

	mu         sync.Mutex
	remove     func()
	timer      *time.Timer
	deviceSeen bool
	claimed    bool // a client holds the key (is waiting for the device, or paired)
	paired     bool // the device was handed to a client: the key is spent
	expired    bool
	ended      bool
}

var _ rtcp.Link = (*connKey)(nil)

func (k *connKey) Done() <-chan struct{} { return k.done }

func (k *connKey) takeDeviceSlot() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.deviceSeen || k.ended {
		return false
	}
	k.deviceSeen = true
	return true
}

func (k *connKey) releaseDeviceSlot() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deviceSeen = false
}

func (k *connKey) isClaimed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.claimed || k.ended
}

// Open hands the key's device to the first client that asks, waiting for
// the device to connect if it has not yet.
func (k *connKey) Open(ctx context.Context, client, addr string) (net.Conn, error) {
	k.mu.Lock()
	switch {
	case k.ended || k.paired:
		k.mu.Unlock()
		return nil, &mux.RefusedError{Reason: "c8y: this connection key is used or expired; a key pairs one client"}
	case k.claimed:
		k.mu.Unlock()
		return nil, &mux.RefusedError{Reason: "c8y: another client is pairing with this key; a key pairs one client"}
	}
	k.claimed = true
	k.mu.Unlock()
	select {
	case dc := <-k.device:
		k.mu.Lock()
		k.paired = true
		if k.timer != nil {
			k.timer.Stop()
		}
		k.mu.Unlock()
		k.s.log().Info("c8y: tunnel paired", "name", k.logName(), "client", client, "client_addr", addr)
		dc.SetMode(readahead.Hold) // in a session: the client's pace holds it back
		return &pairedConn{Conn: dc, k: k}, nil
	case <-ctx.Done():
		k.unclaim()
		return nil, fmt.Errorf("c8y: the device of %q did not connect in time: %w", k.logName(), ctx.Err())
	case <-k.done:
		return nil, &mux.RefusedError{Reason: "c8y: the connection key expired before its device connected"}
	}
}

func (k *connKey) unclaim() {
	k.mu.Lock()
	k.claimed = false
	expired := k.expired
	k.mu.Unlock()
	if expired {
		k.end("expired")
	}
}

// expire drops the key at its expiry, unless a client is pairing with it
// (then the pairing decides).
func (k *connKey) expire() {
	k.mu.Lock()
	k.expired = true
	claimed := k.claimed
	k.mu.Unlock()
	if !claimed {
		k.end("expired")
	}
}

// end drops the key: its name leaves the DP, and a device still waiting
// for a client is closed.
func (k *connKey) end(why string) {
	k.mu.Lock()
	if k.ended {
		k.mu.Unlock()
		return
	}
	k.ended = true
	if k.timer != nil {
		k.timer.Stop()
	}
	remove := k.remove
	k.mu.Unlock()
	// The name leaves the DP first: a device handler waiting on done
	// closes the device, and whoever the device tells must find the name
	// gone.
	if remove != nil {
		remove()
	}
	close(k.done)
	k.s.mu.Lock()
	if k.s.keys[k.id] == k {
		delete(k.s.keys, k.id)
	}
	k.s.mu.Unlock()
	select {
	case dc := <-k.device:
		dc.Close()
	default:
	}
	k.s.log().Info("c8y: key dropped", "name", k.logName(), "why", why)
}

// pairedConn is the device's WebSocket in a tunnel; closing it spends the
// key.
type pairedConn struct {
	*readahead.Conn
	k *connKey
}

func (c *pairedConn) Close() error {
	// The name leaves the DP before the device can see the end, so that
	// whoever the device tells finds the key spent.
	c.k.end("the tunnel ended")
	return c.Conn.Close()
}
