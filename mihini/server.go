package mihini

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"rtcp/internal/mux"
	"rtcp/internal/relay"
)

// A Server is the server side of the TCP Remote Connection (the original's
// ServerSideApp). A device dials it and sends LISTEN; the server then
// carries each client that connects to one of its client addresses over
// the device's link, as a CONNECT to the service address of that client
// address, and DATA and CLOSE both ways.
//
// The server keeps one device link: a device that dials again replaces its
// old link, which may be dead without the server knowing (the wire has no
// keepalive). Clients that arrive while no device is connected are closed
// at once. When the link drops, every client on it is cut off.
//
// The zero value is ready to use. Start it with Serve (device links) and
// ServeClients (one per client address), or their ListenAndServe forms,
// and stop it with Close.
type Server struct {
	// HandshakeTimeout bounds the wait for a device's LISTEN after it
	// connects. Default 10 s.
	HandshakeTimeout time.Duration

	// CloseGrace is how long a client id whose CLOSE the device has not
	// answered stays unused. An original device never answers, so its ids
	// come free after this. Default 5 s.
	CloseGrace time.Duration

	// MaxBuffer bounds the bytes held for a client that reads more slowly
	// than its service sends. The wire has no flow control: when a
	// client's buffer is full, the link is not read until the client
	// takes some, so TCP holds the device back (and the link's other
	// clients wait). Default 256 KiB.
	MaxBuffer int

	// StallTimeout is how long one session whose reader takes nothing
	// may hold up the other sessions on the link before it is cut (and
	// the cut logged); a link that carries only that session waits for
	// as long as it lasts. Default 10 s; negative never cuts.
	StallTimeout time.Duration

	// Logger receives the server's logs. Nil is silent.
	Logger *slog.Logger

	once sync.Once
	ls   linkServer
}

func (s *Server) init() {
	s.once.Do(func() {
		s.ls.handshakeTimeout = s.HandshakeTimeout
		s.ls.cfg = linkConfig{closeGrace: s.CloseGrace, maxBuffer: s.MaxBuffer, stallTimeout: s.StallTimeout, log: orDiscard(s.Logger)}
		s.ls.up = func(l *deviceLink, done <-chan struct{}) {
			s.ls.isReady()
			select {
			case <-l.s.Done():
			case <-done:
			}
		}
	})
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve accepts device links on l. It always returns a non-nil error;
// after Close, ErrServerClosed. It closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	return s.ls.serve(l, s.ls.serveDevice)
}

// ListenAndServeClients listens on the TCP address addr and calls
// ServeClients.
func (s *Server) ListenAndServeClients(addr, service string) error {
	if _, _, err := splitService(service); err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeClients(l, service)
}

// ServeClients accepts clients on l and carries each over the device link
// to service, the host:port the device dials for it (the original's
// LocalAddress:LocalPort). It always returns a non-nil error; after
// Close, ErrServerClosed. It closes l when it returns.
func (s *Server) ServeClients(l net.Listener, service string) error {
	s.init()
	if _, _, err := splitService(service); err != nil {
		l.Close()
		return err
	}
	return s.ls.serve(l, func(c net.Conn) {
		st, err := s.dial(context.Background(), service)
		if err != nil {
			s.ls.cfg.log.Info("mihini: client refused", "client", c.RemoteAddr(), "service", service, "err", err)
			return
		}
		log := s.ls.cfg.log.With("client", c.RemoteAddr(), "service", service, "session", st.ID())
		log.Debug("mihini: client connected")
		_, err = relay.Join(relay.FullClose(c), st, nil)
		logEnd(log, err, s.ls.g.Closed())
	})
}

// DialContext opens a session through the device to address, the
// host:port the device dials; network must be "tcp". It returns as soon as
// the CONNECT is queued: the wire has no answer to it, so a service the
// device cannot reach shows as the connection closing. With no device
// connected it fails with ErrNoDevice. It fits http.Transport.DialContext.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	s.init()
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("mihini: network %q is not supported; a device dials TCP", network)}
	}
	c, err := s.dial(ctx, address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	return c, nil
}

func (s *Server) dial(ctx context.Context, service string) (*mux.Stream, error) {
	if _, _, err := splitService(service); err != nil {
		return nil, err
	}
	l, err := s.ls.current()
	if err != nil {
		return nil, err
	}
	return l.open(ctx, service)
}

// Close stops the listeners, closes the device link and every client on
// it, and returns when the server's goroutines have ended.
func (s *Server) Close() error {
	s.init()
	return s.ls.close()
}
