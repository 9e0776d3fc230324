package tcpipe

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"rtcp/internal/serve"
)

// A Server is a tcpipe instance in server mode (tcpipe -s PORT): it
// accepts the partner link of a client instance, one at a time, and
// carries user connections over it both ways.
//
// A user application that connects to one of Ports makes the partner
// connect to its target on the same port; a connection the partner
// accepted on a port is carried to Target on that port. Each port carries
// one connection at a time. When the partner link drops, every user
// connection is closed. A second partner is refused while the first is
// up, unless it proves it holds Secret: then it replaces the old link,
// which may be dead without the server knowing (the wire has no
// keepalive; the server has the kernel probe the link, and notices a
// vanished partner within about 30 s).
//
// Set its fields, call Serve or ListenAndServe, and Close.
type Server struct {
	// Ports are where the server accepts user applications. Each
	// connection goes to the partner's target on the same port.
	Ports []uint16

	// Bind is the local address on which Ports are listened on. Empty
	// means every address. (An addition to the original, so that two
	// instances can run on one host.)
	Bind string

	// Target is the host the server connects to for the partner's user
	// connections, on their port. Empty refuses them (Disconnect).
	Target string

	// TargetPorts are the ports of Target that the partner's connections
	// may reach; a Connect for any other is refused (Disconnect, and a
	// warning logged), so that a partner cannot reach every service of
	// Target. Empty means Ports; if Ports is empty too, any port (as the
	// original), and the server warns when it starts.
	TargetPorts []uint16

	// DialTarget dials Target. Nil means a net.Dialer with a 10 s
	// timeout.
	DialTarget func(ctx context.Context, network, address string) (net.Conn, error)

	// Quiet bounds how long a new user connection on a port is held
	// (accepted, not yet carried) while the partner may still send Data
	// for the port's last connection, which would otherwise reach the new
	// one: until the partner's Disconnect for the last connection comes,
	// or for at most Quiet after it ended. Only a connection that comes
	// that soon waits. Default 200 ms.
	Quiet time.Duration

	// FirstDataHold bounds how long a user's first bytes wait after the
	// Connect for the partner to speak of the connection: its first Data,
	// or its Disconnect if its target refused (the bytes are then
	// dropped). An original partner exits when it gets Data for a
	// connection it could not make, and says nothing when it could.
	// Default 100 ms; negative: no wait. With Secret there is no wait:
	// the partner is rtcp, which drops such Data.
	FirstDataHold time.Duration

	// MaxBuffer bounds the bytes held for a user connection that reads
	// more slowly than its partner sends. The wire has no flow control:
	// when a connection's buffer is full, the partner link is not read
	// until the connection takes some, so TCP holds the partner back
	// (and the link's other connections wait). Default 256 KiB.
	MaxBuffer int

	// StallTimeout is how long one connection whose reader takes nothing
	// may hold up the other connections on the partner link before it is
	// cut (Disconnect, and the cut logged); a link that carries only that
	// connection waits for as long as it lasts. Default 10 s; negative
	// never cuts.
	StallTimeout time.Duration

	// Secret, if set, is a secret of at least 16 bytes that the server
	// and its partner share: a partner must prove it holds it before
	// its link is taken, and the server proves it back (SPEC.md,
	// "Authentication"). A partner that proves it replaces the link
	// before it (the partner reconnected; the old link may be dead
	// unnoticed). Nil runs no handshake, as the original: anyone who
	// connects can be the partner, so the server then refuses a partner
	// while another is up. An original tcpipe holds no secret.
	Secret []byte

	// HandshakeTimeout bounds the handshake of Secret. Default 10 s.
	HandshakeTimeout time.Duration

	// Logger receives the server's logs. Nil is silent.
	Logger *slog.Logger

	once sync.Once
	in   instance
}

func (s *Server) init() {
	s.once.Do(func() {
		s.in.setup(settings{server: true, ports: s.Ports, bind: s.Bind, target: s.Target, targetPorts: s.TargetPorts,
			dialTarget: s.DialTarget, quiet: s.Quiet, firstDataHold: s.FirstDataHold, maxBuffer: s.MaxBuffer,
			stallTimeout: s.StallTimeout, secret: s.Secret, handshake: s.HandshakeTimeout, log: s.Logger})
	})
}

// ListenAndServe listens for the partner on the TCP address addr and
// calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	s.init()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve starts accepting user applications on Ports (once, whatever the
// number of calls) and accepts partner links on l. It always returns a
// non-nil error; after Close, ErrServerClosed. It closes l when it
// returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	in := &s.in
	if err := checkSecret(in.secret); err != nil {
		l.Close()
		return err
	}
	if err := in.listenUsers(); err != nil {
		l.Close()
		return err
	}
	err := in.g.Serve(l, func(c net.Conn) bool {
		in.acceptPartner(c)
		return false
	})
	if err == serve.ErrClosed {
		return ErrServerClosed
	}
	return err
}

// Close stops accepting, closes the partner link and every user
// connection, and returns when the server's goroutines have ended.
func (s *Server) Close() error {
	s.init()
	s.in.close()
	return nil
}
