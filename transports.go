package rtcp

import (
	"fmt"
	"net"
	"strings"

	"rtcp/internal/mux"
	"rtcp/internal/plan5link"
	"rtcp/protocol/plan5"
)

// dpTransports lists the transports a server link may ask for, by the
// Transport of its Aloha ("" is the plain protocol, JSON).
func dpTransports() []string { return []string{"", wireTCP, wireYamux} }

// dpTransport returns the function that builds the DP's side of a server
// link of transport t once its server is registered, or nil if the DP
// does not speak t. Adding a transport is adding a case here (and to
// dpTransports, and its server side in ListenConfig.Transport).
func dpTransport(t string) func(dp *DiscoverPoint, h *serverHello) dpServerLink {
	switch t {
	case "":
		return (*DiscoverPoint).jsonServerLink
	case wireYamux:
		return (*DiscoverPoint).yamuxServerLink
	case wireTCP:
		return (*DiscoverPoint).tcpServerLink
	}
	return nil
}

// serverHello is a server link at the DP once its Aloha is read and its
// name registered: what a transport builds the link from.
type serverHello struct {
	c      net.Conn
	r      *plan5.Reader   // what the server sent after its Aloha
	ir     *mux.IdleReader // c's reads, for keepalive
	theirs *plan5.Aloha
	ours   *plan5.Aloha // the DP's answer, not yet written: a transport may add to it
	reg    Registration
}

func (h *serverHello) name() string {
	return fmt.Sprintf("link to server %q at %s", h.theirs.N, h.c.RemoteAddr())
}

// dpServerLink is the DP's side of one server link.
type dpServerLink struct {
	link  Link
	end   func() error // closes the link
	start func()       // once the DP's Aloha is written: keepalive
	ended func()       // once the link has ended, or nil
}

// dpTransportNames lists the transports for a refusal's text.
func dpTransportNames() string {
	var names []string
	for _, t := range dpTransports() {
		if t != "" {
			names = append(names, fmt.Sprintf("%q", t))
		}
	}
	return strings.Join(names, ", ") + " and the plain protocol"
}

func (dp *DiscoverPoint) yamuxServerLink(h *serverHello) dpServerLink {
	keepAlive := keepAlivePeriod(dp.KeepAlive)
	s := newYamuxSession(h.c, h.r, h.ir, true, h.name(), dp.flow, dp.log())
	return dpServerLink{link: newYamuxLink(s), end: s.Close,
		start: func() { startYamuxKeepAlive(h.ir, s, keepAlive) }}
}

func (dp *DiscoverPoint) jsonServerLink(h *serverHello) dpServerLink {
	s := dp.jsonSession(h)
	return dpServerLink{link: muxLink{s}, end: s.Close,
		start: func() { startKeepAlive(h.ir, s, h.ours, h.theirs) }}
}

// tcpServerLink is a JSON control link whose sessions each run on a data
// link of their own (datalink.go).
func (dp *DiscoverPoint) tcpServerLink(h *serverHello) dpServerLink {
	s := dp.jsonSession(h)
	dl := dp.newDataLink(s, h.theirs.N, h.reg.Owner, h.theirs.Spares)
	h.ours.Token, h.ours.Spares = dl.token, dl.max
	return dpServerLink{link: dl, end: s.Close,
		start: func() { startKeepAlive(h.ir, s, h.ours, h.theirs) },
		ended: dl.end}
}

// jsonSession is the session of a JSON server link (or control link).
func (dp *DiscoverPoint) jsonSession(h *serverHello) *mux.Session {
	cfg := plan5link.Config(h.ours, h.theirs)
	cfg.Name = h.name()
	cfg.AcceptBacklog = -1 // a server opens nothing toward the DP
	dp.flow.apply(&cfg, dp.log())
	h.r.Grow(plan5link.LinkReadBuffer)
	fr := plan5link.NewFramer(h.r, h.c)
	fr.SetHeartbeat(h.ours)
	fr.SetLegacy(plan5.Legacy(h.theirs.V))
	return mux.New(h.c, fr, cfg)
}
