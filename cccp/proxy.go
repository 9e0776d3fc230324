package cccp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"rtcp"
	"rtcp/internal/mux"
	"rtcp/internal/readahead"
	"rtcp/internal/serve"
	wire "rtcp/protocol/cccp"
)

// Defaults of a Proxy.
const (
	DefaultPrefix          = "cccp:"
	DefaultRegisterTimeout = 10 * time.Second
)

// ErrProxyClosed is returned by the Serve methods after Close.
var ErrProxyClosed = errors.New("cccp: proxy closed")

// A Proxy is the Telenor Connexion CCCP proxy, run beside (or inside) a
// DP. Devices dial its device port and register with their serial; the
// HTTP control API (the Proxy is its http.Handler) starts a proxy for a
// serial on a port of its own, where TCP clients reach the device:
//
//	GET /on?serial=S[&persistent=true|false][&ip_whitelist=IP,CIDR,...][&timeout=SEC]
//	GET /off?serial=S
//	GET /status?serial=S
//
// Each registered device is also a server at the DP named Prefix+serial,
// so that a client can reach it with rtcp.Dial as well, under the same
// rules (a proxy must be on, the whitelist applies, the client cancels the
// timeout); every session goes through the DP's one relay.
//
// A proxy is persistent or not. A persistent proxy stays up while the
// device and the client come and go, and what either sends while the
// other is absent is thrown away. A non-persistent proxy closes as soon
// as its client leaves, or its device leaves while paired with the
// client, disconnecting the other; what either sends before the other
// has come is kept (up to BufferSize) and delivered.
//
// A device or client that sends more than BufferSize bytes while nothing
// reads them (no partner yet, or no proxy on for a device) is
// disconnected, with a logged reason: holding it back instead would hide
// its close behind the bytes not read, and its connection would stay
// open on the proxy's side for good.
//
// Set DP and the port range; the other fields have working defaults.
type Proxy struct {
	// DP is the discover point the proxy's sessions go through.
	DP *rtcp.DiscoverPoint

	// Host is the host name the /on answer gives clients. Empty means the
	// host the API request was addressed to.
	Host string

	// MinPort and MaxPort bound the ports proxies listen on, both
	// included. /on answers 503 when every port is in use.
	MinPort, MaxPort int

	// ListenHost is the address the proxy ports listen on. Empty means
	// every interface.
	ListenHost string

	// Token protects the control API: a request must carry the header
	// "Authorization: Bearer <Token>". Empty means that only requests from
	// loopback addresses are served.
	Token string

	// Prefix makes a device's name at the DP: Prefix + serial. Default
	// DefaultPrefix, "cccp:", with which every serial a device may send
	// makes a name (an rtcp.ValidDoorName, which the web doors do not
	// reach). With a prefix without ':', such as "cccp-", the name must
	// be an rtcp.ValidName (the web doors reach it): a device whose
	// serial makes it something else (upper case, '.', a space) is
	// refused by the DP, closed, with a logged reason.
	Prefix string

	// Key is the key of the DP's Policy that the devices' names register
	// as (rtcp.DiscoverPoint.AddLinkAs), so that they obey the Policy in
	// force as any server's names do: a device whose name a rule gives to
	// Owners without Key is refused (closed, with a logged reason), and
	// one whose name the Policy stops allowing (SetPolicy) is withdrawn
	// from the DP at its next session. Empty means anonymous, which a
	// Policy admits only with AnonymousServers, and only for names no
	// rule gives to Owners. Without a Policy any free name may be taken.
	// Every device of the Proxy registers as this one key.
	Key string

	// RegisterTimeout bounds how long a device may take to send its serial
	// after connecting. Default DefaultRegisterTimeout.
	RegisterTimeout time.Duration

	// BufferSize bounds, per party, what is kept of what a device or
	// client sends while its partner is absent (non-persistent proxies) or
	// not reading. A party that sends more while its partner is absent is
	// disconnected; one whose partner is slow is held back. Default
	// 64 KiB.
	BufferSize int

	// Listen opens a proxy port. Nil means net.Listen. Tests inject
	// in-memory listeners.
	Listen func(network, addr string) (net.Listener, error)

	// Logger receives logs of devices, proxies and clients. Nil is silent.
	Logger *slog.Logger

	initOnce    sync.Once
	mu          sync.Mutex
	devices     map[string]*device
	registering map[string]bool // serials of connections between claim and devices
	proxies     map[string]*proxy
	ports       map[int]bool
	nextPort    int
	changed     chan struct{} // closed and replaced when a device comes, goes or is freed
	closed      bool
	// g runs the device and proxy ports and their goroutines; it tracks
	// device connections until they register, and clients.
	g serve.Group
}

func (p *Proxy) init() {
	p.initOnce.Do(func() {
		if p.Prefix == "" {
			p.Prefix = DefaultPrefix
		}
		if p.RegisterTimeout <= 0 {
			p.RegisterTimeout = DefaultRegisterTimeout
		}
		p.devices = make(map[string]*device)
		p.registering = make(map[string]bool)
		p.proxies = make(map[string]*proxy)
		p.ports = make(map[int]bool)
		p.changed = make(chan struct{})
		p.g.Logger = p.Logger
	})
}

func (p *Proxy) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// notify wakes the clients waiting for a device; call with p.mu held.
func (p *Proxy) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Name returns the name at the DP of the device with serial.
func (p *Proxy) Name(serial string) string {
	p.init()
	return p.Prefix + serial
}

// A device is one registered device connection: a single-session Link of
// the DP.
type device struct {
	p      *Proxy
	serial string
	conn   net.Conn
	ra     *readahead.Conn // what the device sends after its serial line
	remove func()          // takes its name off the DP

	mu   sync.Mutex
	view *view // the session the device is in, if any
}

// A proxy is one /on: a port for clients of a serial.
type proxy struct {
	p           *Proxy
	req         wire.OnRequest
	host        string
	port        int
	ln          net.Listener
	timer       *time.Timer
	transferred atomic.Int64
	done        chan struct{} // closed by off

	// guarded by p.mu
	clientSeen bool     // a client has come: the timeout no longer applies
	client     net.Conn // the client on the proxy port, if any
	off        bool
}

// ListenAndServeDevices listens on the TCP address addr and calls
// ServeDevices.
func (p *Proxy) ListenAndServeDevices(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return p.ServeDevices(l)
}

// ServeDevices accepts device connections on l: each sends its serial and
// "\r", and from then on is the device with that serial. A connection
// that names a serial a live connection holds is refused: closed, with a
// logged reason (a stranger must not evict a device). One whose earlier
// connection has ended takes its place; TCP keepalive ends the connection
// of a device that vanished without a word within about 35 s. It returns
// ErrProxyClosed after Close, and closes l; at once, with an error
// matching rtcp.ErrBadName, if Prefix can make no valid name.
func (p *Proxy) ServeDevices(l net.Listener) error {
	p.init()
	if err := rtcp.ValidDoorName(p.Name("0")); err != nil {
		l.Close()
		return fmt.Errorf("cccp: Proxy.Prefix %q makes no valid name: %w", p.Prefix, err)
	}
	err := p.g.Serve(l, p.serveDevice)
	if err == serve.ErrClosed {
		return ErrProxyClosed
	}
	return err
}

// serveDevice reads a device's registration and serves the device until
// its connection ends or it is replaced. Once the device has registered,
// its connection is the device's to close (kept).
func (p *Proxy) serveDevice(c net.Conn) (kept bool) {
	c.SetReadDeadline(time.Now().Add(p.RegisterTimeout))
	br := bufio.NewReader(c)
	serial, err := wire.ReadSerial(br)
	if err != nil {
		p.log().Info("cccp: device did not register", "remote", c.RemoteAddr(), "err", err)
		return false
	}
	c.SetReadDeadline(time.Time{})
	if err := p.claim(serial); err != nil {
		p.log().Warn("cccp: device refused", "serial", serial, "remote", c.RemoteAddr(), "reason", err)
		return false
	}
	if kc, ok := c.(keepAliveConn); ok {
		kc.SetKeepAliveConfig(deviceKeepAlive)
	}
	d := &device{p: p, serial: serial, conn: c, ra: readahead.New(c, br, p.BufferSize)}
	// The owner counts only for an anonymous Proxy: with a Key, the DP
	// registers the name as the key's.
	remove, err := p.DP.AddLinkAs(p.Key, p.Name(serial), "cccp-device:"+serial, d)
	p.g.Release(c)
	p.mu.Lock()
	delete(p.registering, serial)
	if err != nil || p.closed {
		p.mu.Unlock()
		if err != nil {
			p.log().Warn("cccp: device refused by the DP", "serial", serial, "remote", c.RemoteAddr(), "key", p.Key, "err", err)
		} else {
			remove()
		}
		d.ra.Close()
		return true
	}
	d.remove = remove
	p.devices[serial] = d
	p.setModeLocked(d)
	p.notify()
	p.mu.Unlock()
	p.log().Info("cccp: device registered", "serial", serial, "remote", c.RemoteAddr())

	select {
	case <-d.ra.Done():
	case <-p.g.Done():
	}
	d.close()
	if err := d.ra.Err(); errors.Is(err, readahead.ErrOverflow) {
		p.log().Warn("cccp: device disconnected: it sent more than the proxy keeps for a client that is not there",
			"serial", serial, "remote", c.RemoteAddr(), "buffer_size", p.bufferSize())
	} else {
		p.log().Info("cccp: device left", "serial", serial, "remote", c.RemoteAddr(), "err", err)
	}
	return true
}

// deviceKeepAlive finds a device that vanished without a word (power
// lost, a NAT mapping dropped) about 35 s after it last sent: until then
// its connection holds its serial and refuses the device's next
// registration.
var deviceKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 4}

// keepAliveConn is a *net.TCPConn, or a wrapper that passes the setting on.
type keepAliveConn interface {
	SetKeepAliveConfig(net.KeepAliveConfig) error
}

// claim reserves serial for a registration, or says why it cannot: a live
// device holds it, or another connection is registering it. A device whose
// connection has ended is taken off the books first. The caller deletes
// p.registering[serial] when it is done.
func (p *Proxy) claim(serial string) error {
	p.mu.Lock()
	old := p.devices[serial]
	switch {
	case p.registering[serial]:
		p.mu.Unlock()
		return errors.New("another connection is registering the same serial")
	case old != nil && old.alive():
		p.mu.Unlock()
		return fmt.Errorf("a live connection from %s holds the serial; a device that has gone is noticed "+
			"within about %s, and then its next registration is taken", old.conn.RemoteAddr(),
			deviceKeepAlive.Idle+time.Duration(deviceKeepAlive.Count)*deviceKeepAlive.Interval)
	}
	p.registering[serial] = true
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	return nil
}

// alive reports whether the device's connection has not ended.
func (d *device) alive() bool {
	select {
	case <-d.ra.Done():
		return false
	default:
		return true
	}
}

func (p *Proxy) bufferSize() int {
	if p.BufferSize <= 0 {
		return readahead.DefaultSize
	}
	return p.BufferSize
}

// close takes the device off the books and ends its connection.
func (d *device) close() {
	d.remove()
	p := d.p
	p.mu.Lock()
	if p.devices[d.serial] == d {
		delete(p.devices, d.serial)
		p.notify()
	}
	p.mu.Unlock()
	d.ra.Close()
	d.mu.Lock()
	v := d.view
	d.mu.Unlock()
	if v != nil {
		v.Close()
	}
}

// setModeLocked sets what becomes of what device d sends while it is in
// no session: thrown away while a persistent proxy is on for it, kept
// otherwise, up to BufferSize, for the next client (one byte more
// disconnects it). In a session the client's pace holds it back. Call with
// p.mu held.
func (p *Proxy) setModeLocked(d *device) {
	pr := p.proxies[d.serial]
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ra.SetMode(idleMode(d.view == nil, pr != nil && pr.req.Persistent))
}

// idleMode is the read-ahead mode of a party (device or client) of a
// proxy: one nobody reads must not hide its close (Limit), nor keep what a
// persistent proxy drops (Discard).
func idleMode(idle, persistent bool) readahead.Mode {
	switch {
	case !idle:
		return readahead.Hold
	case persistent:
		return readahead.Discard
	default:
		return readahead.Limit
	}
}

func refused(format string, args ...any) error {
	return &mux.RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Done is never closed: a device's link ends by being removed.
func (d *device) Done() <-chan struct{} { return nil }

// Open gives a client the device, if a proxy is on for its serial and the
// client's address is allowed: the DP calls it for clients of every door.
func (d *device) Open(ctx context.Context, client, addr string) (net.Conn, error) {
	p := d.p
	p.mu.Lock()
	pr := p.proxies[d.serial]
	p.mu.Unlock()
	if pr == nil {
		return nil, refused("cccp: no proxy is on for device %q; turn one on with /on?serial=", d.serial)
	}
	if pr.req.IPWhitelist != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !pr.req.Allows(ap.Addr()) {
			return nil, refused("cccp: client address %s is not in the proxy's ip_whitelist for device %q", addr, d.serial)
		}
	}
	select {
	case <-d.ra.Done():
		return nil, refused("cccp: device %q has just disconnected", d.serial)
	default:
	}
	d.mu.Lock()
	if d.view != nil {
		d.mu.Unlock()
		return nil, refused("cccp: device %q is in a session with another client", d.serial)
	}
	v := newView(d.ra, d.conn, &pr.transferred, func() { d.detached(pr) })
	d.view = v
	d.ra.SetMode(readahead.Hold)
	d.mu.Unlock()
	p.clientCame(pr)
	p.log().Info("cccp: session", "serial", d.serial, "client", client, "addr", addr)
	return v, nil
}

// detached is called when the device's session ends.
func (d *device) detached(pr *proxy) {
	p := d.p
	d.mu.Lock()
	d.view = nil
	d.mu.Unlock()
	p.mu.Lock()
	p.setModeLocked(d)
	p.notify()
	p.mu.Unlock()
	if !pr.req.Persistent {
		// A non-persistent proxy closes when either side does, and takes
		// the other with it.
		p.turnOff(pr, "the session ended")
		d.ra.Close()
	}
}

// clientCame cancels the proxy's timeout: a client has connected.
func (p *Proxy) clientCame(pr *proxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr.clientSeen = true
	if pr.timer != nil {
		pr.timer.Stop()
	}
}

// Close stops the device listeners, turns every proxy off, disconnects
// every device and client, and waits for the Proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.init()
	p.mu.Lock()
	p.closed = true
	proxies := make([]*proxy, 0, len(p.proxies))
	for _, pr := range p.proxies {
		proxies = append(proxies, pr)
	}
	p.mu.Unlock()
	p.g.CloseListeners()
	for _, pr := range proxies {
		p.turnOff(pr, "the proxy service is closing")
	}
	p.g.Close()
	return nil
}

// errNoPorts is the reason /on answers 503.
var errNoPorts = errors.New(wire.MsgNoAvailablePorts)

// An onConflictError is the reason /on answers 409: a proxy is on for the
// serial with other parameters. A proxy keeps the parameters it was turned
// on with: changing them under a client (a narrower whitelist, a timeout
// that has passed, persistence) has no answer a user could predict.
type onConflictError struct {
	on   wire.OnRequest
	port int
}

func (e *onConflictError) Error() string {
	params := fmt.Sprintf("persistent=%t", e.on.Persistent)
	if q, err := url.ParseQuery(e.on.Encode()); err == nil && q.Has("ip_whitelist") {
		params += ", ip_whitelist=" + q.Get("ip_whitelist")
	}
	params += fmt.Sprintf(", timeout=%d", e.on.Timeout/time.Second)
	return fmt.Sprintf("cccp: a proxy is already on for serial %q, on port %d, with other parameters (%s); "+
		"repeat /on with those to get its port, or turn it off with /off?serial=%s first",
		e.on.Serial, e.port, params, url.QueryEscape(e.on.Serial))
}

// turnOn starts a proxy for req.Serial, or returns the one that is on if
// req asks for the same; an *onConflictError if it asks for another.
func (p *Proxy) turnOn(req wire.OnRequest, host string) (*proxy, error) {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrProxyClosed
	}
	if pr := p.proxies[req.Serial]; pr != nil {
		if !pr.req.Equal(&req) {
			return nil, &onConflictError{on: pr.req, port: pr.port}
		}
		return pr, nil
	}
	if p.MinPort <= 0 || p.MaxPort < p.MinPort || p.MaxPort > 65535 {
		return nil, fmt.Errorf("cccp: the proxy has no valid port range (%d-%d); set MinPort and MaxPort", p.MinPort, p.MaxPort)
	}
	listen := p.Listen
	if listen == nil {
		listen = net.Listen
	}
	// Ports are handed out in turn, not lowest first, so that a client of
	// a proxy just turned off does not reach the next device on its port.
	n := p.MaxPort - p.MinPort + 1
	start := p.nextPort
	if start < p.MinPort || start > p.MaxPort {
		start = p.MinPort
	}
	for i := range n {
		port := p.MinPort + (start-p.MinPort+i)%n
		if p.ports[port] {
			continue
		}
		ln, err := listen("tcp", net.JoinHostPort(p.ListenHost, strconv.Itoa(port)))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cccp: cannot listen on port %d: %w", port, err)
		}
		pr := &proxy{p: p, req: req, host: host, port: port, ln: ln, done: make(chan struct{})}
		// serveClients waits for p.mu, held here, before it touches pr.
		if !p.g.Go(func() { p.serveClients(pr) }) {
			ln.Close()
			return nil, ErrProxyClosed
		}
		p.nextPort = port + 1
		p.ports[port] = true
		p.proxies[req.Serial] = pr
		if req.Timeout > 0 {
			pr.timer = time.AfterFunc(req.Timeout, func() { p.timedOut(pr) })
		}
		if d := p.devices[req.Serial]; d != nil {
			p.setModeLocked(d)
		}
		p.log().Info("cccp: proxy on", "serial", req.Serial, "port", port, "persistent", req.Persistent,
			"whitelist", req.IPWhitelist, "timeout", req.Timeout)
		return pr, nil
	}
	return nil, errNoPorts
}

func (p *Proxy) timedOut(pr *proxy) {
	p.mu.Lock()
	seen := pr.clientSeen
	p.mu.Unlock()
	if !seen {
		p.turnOff(pr, "no client came before the timeout")
	}
}

// turnOff stops a proxy: its port closes and its client is disconnected.
// It reports whether the proxy was on.
func (p *Proxy) turnOff(pr *proxy, why string) bool {
	p.mu.Lock()
	if pr.off {
		p.mu.Unlock()
		return false
	}
	pr.off = true
	close(pr.done)
	if pr.timer != nil {
		pr.timer.Stop()
	}
	if p.proxies[pr.req.Serial] == pr {
		delete(p.proxies, pr.req.Serial)
	}
	delete(p.ports, pr.port)
	client := pr.client
	d := p.devices[pr.req.Serial]
	if d != nil {
		p.setModeLocked(d)
	}
	p.notify()
	p.mu.Unlock()
	pr.ln.Close()
	if client != nil {
		client.Close()
	}
	if d != nil {
		// A session with this proxy's client ends with it.
		d.mu.Lock()
		v := d.view
		d.mu.Unlock()
		if v != nil && v.count == &pr.transferred {
			v.Close()
		}
	}
	p.log().Info("cccp: proxy off", "serial", pr.req.Serial, "port", pr.port, "why", why, "transferred", pr.transferred.Load())
	return true
}

// serveClients accepts clients on a proxy's port until it is turned off.
// A proxy has one client at a time: others are refused.
func (p *Proxy) serveClients(pr *proxy) {
	err := p.g.Serve(pr.ln, func(c net.Conn) bool {
		if !allowed(pr, c.RemoteAddr()) {
			p.log().Info("cccp: client refused: not in ip_whitelist", "serial", pr.req.Serial, "client", c.RemoteAddr())
			return false
		}
		p.mu.Lock()
		busy := pr.client != nil || pr.off
		if !busy {
			pr.client = c
		}
		p.mu.Unlock()
		if busy {
			p.log().Info("cccp: client refused: the proxy has a client", "serial", pr.req.Serial, "client", c.RemoteAddr())
			return false
		}
		p.clientCame(pr)
		p.serveClient(pr, c)
		return false
	})
	select {
	case <-pr.done: // turned off
		return
	default:
	}
	if err == serve.ErrClosed {
		return // Close turns it off
	}
	p.log().Error("cccp: proxy port failed", "serial", pr.req.Serial, "port", pr.port, "err", err)
	p.turnOff(pr, "its port failed: "+err.Error())
}

func allowed(pr *proxy, a net.Addr) bool {
	if pr.req.IPWhitelist == nil {
		return true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && pr.req.Allows(ap.Addr())
}

// serveClient carries a client of the proxy port to the device, through
// the DP, as often as the device comes back (persistent), or once.
func (p *Proxy) serveClient(pr *proxy, c net.Conn) {
	ra := readahead.New(c, nil, p.BufferSize)
	defer func() {
		ra.Close()
		p.mu.Lock()
		if pr.client == c {
			pr.client = nil
		}
		p.notify()
		p.mu.Unlock()
		if errors.Is(ra.Err(), readahead.ErrOverflow) {
			p.log().Warn("cccp: client disconnected: it sent more than the proxy keeps for a device that is not there",
				"serial", pr.req.Serial, "client", c.RemoteAddr(), "buffer_size", p.bufferSize())
		} else {
			p.log().Info("cccp: client left", "serial", pr.req.Serial, "client", c.RemoteAddr())
		}
		if !pr.req.Persistent {
			p.turnOff(pr, "the client left")
		}
	}()
	p.log().Info("cccp: client connected", "serial", pr.req.Serial, "client", c.RemoteAddr())
	name := p.Name(pr.req.Serial)
	waiting := idleMode(true, pr.req.Persistent)
	for {
		ra.SetMode(waiting)
		p.mu.Lock()
		changed := p.changed
		d := p.devices[pr.req.Serial]
		p.mu.Unlock()
		if d != nil {
			ra.SetMode(readahead.Hold)
			v := newView(ra, c, nil, nil)
			if err := p.DP.Relay(v, name, "cccp-client"); err != nil {
				p.log().Debug("cccp: no session", "serial", pr.req.Serial, "err", err)
			}
			ra.SetMode(waiting)
		}
		select {
		case <-changed:
		case <-ra.Done():
			return
		case <-pr.done:
			return
		}
	}
}
