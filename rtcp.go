package rtcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"rtcp/internal/mux"
)

// Transport selects how an indirect server's links to the DP carry sessions.
type Transport int

const (
	// TransportJSON is the seed's Plan5 protocol: every session's bytes
	// travel as base64 in JSON Data messages. It is the zero value.
	TransportJSON Transport = iota
	// TransportYamux switches each link to a yamux session after the Aloha
	// exchange.
	TransportYamux
	// TransportTCP gives each session a TCP connection of its own from the
	// server to the DP (a data link), asked for over a JSON control link;
	// the DP joins it to the client's connection without looking at the
	// bytes (on Linux, the kernel splices them). The fastest mode, at the
	// cost of one TCP connection per session.
	TransportTCP
)

func (t Transport) String() string {
	switch t {
	case TransportJSON:
		return "json"
	case TransportYamux:
		return "yamux"
	case TransportTCP:
		return "tcp"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// ParseTransport parses "json", "yamux" or "tcp".
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "json", "":
		return TransportJSON, nil
	case "yamux":
		return TransportYamux, nil
	case "tcp":
		return TransportTCP, nil
	}
	return 0, fmt.Errorf("rtcp: unknown transport %q (want json, yamux or tcp)", s)
}

// Errors that rtcp returns. Conn and Listener operations wrap them in a
// *net.OpError; test with errors.Is.
var (
	// ErrDiscoverPointClosed is returned by Serve and ListenAndServe after
	// Close or Shutdown.
	ErrDiscoverPointClosed = errors.New("rtcp: discover point closed")
	// ErrNameTaken is returned by Listen (and Registry.Register) when
	// another server already holds the name at the DP.
	ErrNameTaken = errors.New("rtcp: name already served by another server")
	// ErrNoServer is returned by Registry.Lookup when nobody holds a name.
	ErrNoServer = errors.New("rtcp: no server of that name")
	// ErrUnauthorized matches a refusal (a *RefusedError, or Listen's and
	// Dial's errors that wrap one) because the peer gave no key, a wrong
	// proof, or a key without the right to the name; see Policy.
	ErrUnauthorized = errors.New("rtcp: unauthorized")
	// ErrKeyRequired matches the refusal (a *RefusedError, or Listen's
	// and Dial's errors that wrap one) of a peer that gave no key
	// (ListenConfig.Credential, Dialer.Credential) by a DP whose Policy
	// admits none without one. Such a refusal matches ErrUnauthorized
	// too.
	ErrKeyRequired = errors.New("rtcp: the DP requires a key")
	// ErrNotImplemented is returned for a Transport this build cannot use.
	ErrNotImplemented = errors.New("rtcp: not implemented")
	// ErrTransportNotOffered is returned by Listen when the DP does not
	// offer the Transport asked for: an rtcp DP that does not speak it
	// refuses it, and a plain Plan5 DP answers without it. Every DP
	// speaks TransportJSON.
	ErrTransportNotOffered = errors.New("rtcp: the DP does not offer the transport")
	// ErrNoHalfClose is returned by CloseWrite when the peer is a plain
	// Plan5 peer that cannot half-close.
	ErrNoHalfClose = mux.ErrNoHalfClose
	// ErrRefused matches every refusal of a session or a registration,
	// by the DP or the server: a *RefusedError, and the errors of Dial
	// and Listen that wrap one. A Link refuses an open with an error that
	// matches it (a *RefusedError with the Reason, say): the DP gives
	// the client that reason, where any other error of Open is the link
	// failing, and the DP tries the name's other links.
	ErrRefused = mux.ErrRefused
)

// Addr is the address of an rtcp endpoint: a name at a network address,
// written "name@host:port". Network returns "rtcp".
type Addr struct {
	Name string // server or client name; may be empty
	Addr string // host:port of the DP, or of the peer when known
}

func (a *Addr) Network() string { return "rtcp" }

func (a *Addr) String() string {
	if a == nil {
		return "<nil>"
	}
	if a.Name == "" {
		return a.Addr
	}
	return a.Name + "@" + a.Addr
}

// RefusedError is a session refused by the DP or the server: Dial returns
// it, wrapped in a *net.OpError, when the answer to Connect is an Ack with
// X = -1, and Listen when the DP refuses the registration.
type RefusedError struct {
	Name   string // the server name asked for
	DP     string // the DP's address
	Reason string // the reason the DP or server gave
}

// Error says who refused what and why. A RefusedError with no DP (a
// Link's refusal) is its Reason.
func (e *RefusedError) Error() string {
	if e.DP == "" {
		return e.Reason
	}
	return fmt.Sprintf("rtcp: DP %s refused %q: %s", e.DP, e.Name, e.Reason)
}

// Listen announces an indirect server named name at the discover point
// addr and returns a listener for the sessions clients open to it. With an
// empty name it is net.Listen("tcp", addr): a direct server.
func Listen(addr, name string) (net.Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), addr, name)
}

// Dial connects to the indirect server name through the discover point
// addr. With an empty name it is net.Dial("tcp", addr): a direct client.
// Each call uses a new Dialer, which sends its Connect with its Aloha as
// a kept one does: the session opens one round trip to the DP after the
// TCP connection. Only a dial to Plan5's own DP, which may lose a Connect
// sent so, is faster with a kept Dialer (which remembers that DP and does
// not dial it twice).
func Dial(addr, name string) (net.Conn, error) {
	var d Dialer
	return d.DialContext(context.Background(), addr, name)
}

// DialContext is Dial with a context that bounds connecting.
func DialContext(ctx context.Context, addr, name string) (net.Conn, error) {
	var d Dialer
	return d.DialContext(ctx, addr, name)
}

// defaultHandshakeTimeout bounds an Aloha exchange when the context does
// not.
const defaultHandshakeTimeout = 10 * time.Second

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// watchContext interrupts c's I/O when ctx ends; call the returned stop
// function when the setup is over, before using c.
func watchContext(ctx context.Context, c net.Conn) (stop func() error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	} else {
		c.SetDeadline(time.Now().Add(defaultHandshakeTimeout))
	}
	stopWatch := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	return func() error {
		if !stopWatch() {
			return ctx.Err()
		}
		c.SetDeadline(time.Time{})
		return nil
	}
}

func dialTCP(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) (net.Conn, error) {
	if dial != nil {
		return dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
