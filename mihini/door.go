package mihini

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"rtcp"
)

// A Door makes a service behind a Mihini device reachable by name through
// a DiscoverPoint. The device dials the door and sends LISTEN as it would
// to a Server; the door then registers the link with the DP as a server
// called Name, and every session the DP opens to Name (rtcp.Dial, DP port
// mode) goes to the device as a CONNECT to Service.
//
// Like a Server, a door keeps one device link, the newest. While no
// device is connected, Name is not registered and clients of it are
// refused by the DP.
//
// The DP's Policy governs Name as it governs any server's name: the door
// registers each link as Key (rtcp.DiscoverPoint.AddLinkAs). A LISTEN
// whose link the Policy refuses (Name belongs to another key, or the
// Policy admits no anonymous server) is closed with a logged reason and
// replaces nothing, and a link whose name the Policy stops allowing
// (SetPolicy) is withdrawn from the DP at its next session.
//
// Set DP, Name and Service, then call Serve or ListenAndServe, and Close.
type Door struct {
	// DP is the discover point the device is registered with. Required.
	DP *rtcp.DiscoverPoint

	// Name is the server name the device is reachable by: an
	// rtcp.ValidName (one the web doors reach), or an rtcp.ValidDoorName
	// such as "mihini:plc-7". Required.
	Name string

	// Key is the key of the DP's Policy that the device's links register
	// as, so that a rule giving Name to Owners admits them only if Key is
	// one of those. Empty means anonymous, which a Policy admits only
	// with AnonymousServers, and only for names no rule gives to Owners.
	// Without a Policy, Name is taken if it is free.
	Key string

	// Owner is who holds Name in the DP's registry when Key is empty.
	// Default "mihini:" followed by Name. With a Key, Name is held as the
	// key's, like the names of every server of that key.
	Owner string

	// Service is the host:port the device dials for each session, as the
	// device sees it (often 127.0.0.1:PORT). Required.
	Service string

	// HandshakeTimeout, CloseGrace, MaxBuffer, StallTimeout and Logger
	// are as in Server. The DP relays each session: its client is the
	// session's reader.
	HandshakeTimeout time.Duration
	CloseGrace       time.Duration
	MaxBuffer        int
	StallTimeout     time.Duration
	Logger           *slog.Logger

	once sync.Once
	ls   linkServer
}

func (d *Door) init() {
	d.once.Do(func() {
		d.ls.handshakeTimeout = d.HandshakeTimeout
		d.ls.cfg = linkConfig{closeGrace: d.CloseGrace, maxBuffer: d.MaxBuffer, stallTimeout: d.StallTimeout, log: orDiscard(d.Logger)}
		d.ls.admit = d.register
		d.ls.up = d.serveLink
	})
}

func (d *Door) check() error {
	switch {
	case d.DP == nil:
		return errors.New("mihini: Door.DP is nil; set the DiscoverPoint to register devices with")
	case d.Name == "":
		return errors.New("mihini: Door.Name is empty; set the name clients reach the device by")
	}
	if err := rtcp.ValidDoorName(d.Name); err != nil {
		return fmt.Errorf("mihini: Door.Name: %w", err)
	}
	_, _, err := splitService(d.Service)
	return err
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (d *Door) ListenAndServe(addr string) error {
	if err := d.check(); err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return d.Serve(l)
}

// Serve accepts device links on l. It always returns a non-nil error;
// after Close, ErrServerClosed. It closes l when it returns.
func (d *Door) Serve(l net.Listener) error {
	if err := d.check(); err != nil {
		l.Close()
		return err
	}
	d.init()
	return d.ls.serve(l, d.ls.serveDevice)
}

// register makes l a Link of Name, as Key, until release is called.
func (d *Door) register(l *deviceLink) (release func(), err error) {
	owner := d.Owner
	if owner == "" {
		owner = "mihini:" + d.Name
	}
	remove, err := d.DP.AddLinkAs(d.Key, d.Name, owner, dpLink{l, d.Service})
	if err != nil {
		return nil, fmt.Errorf("mihini: the DP does not take the device's link as the server %q (Door.Key %q): %w", d.Name, d.Key, err)
	}
	return remove, nil
}

// serveLink holds the registered link l until it ends or the door closes.
func (d *Door) serveLink(l *deviceLink, done <-chan struct{}) {
	d.ls.isReady()
	d.ls.cfg.log.Info("mihini: device reachable through the DP", "name", d.Name, "remote", l.remote, "service", d.Service)
	select {
	case <-l.s.Done():
	case <-done:
	}
}

// Close stops the listeners, withdraws the device from the DP, closes its
// link and every session on it, and returns when the door's goroutines
// have ended.
func (d *Door) Close() error {
	d.init()
	return d.ls.close()
}

var _ rtcp.Link = dpLink{}

// dpLink is a device link as the DP sees it: each session is a CONNECT to
// one service.
type dpLink struct {
	l       *deviceLink
	service string
}

func (d dpLink) Open(ctx context.Context, _, _ string) (net.Conn, error) {
	st, err := d.l.open(ctx, d.service)
	if err != nil {
		return nil, err // not a nil *mux.Stream in a non-nil net.Conn
	}
	return st, nil
}

func (d dpLink) Done() <-chan struct{} { return d.l.s.Done() }
