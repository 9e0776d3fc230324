package punch

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// rendezvous is the tests' stand-in for the DP: two peers that send it the
// same key on a line each are told each other's address as it saw them,
// and one fresh secret, on a line: "ADDR:PORT HEXSECRET".
type rendezvous struct {
	l  net.Listener
	wg sync.WaitGroup
	mu sync.Mutex // guards waiting
	// waiting holds, by key, the first peer's connection until the
	// second arrives.
	waiting map[string]net.Conn
}

func startRendezvous(t testing.TB, l net.Listener) *rendezvous {
	r := &rendezvous{l: l, waiting: map[string]net.Conn{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() {
		l.Close()
		r.wg.Wait()
		r.mu.Lock()
		for _, c := range r.waiting {
			c.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *rendezvous) serve() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			key, err := bufio.NewReaderSize(c, 64).ReadString('\n')
			if err != nil {
				c.Close()
				return
			}
			r.mu.Lock()
			other, ok := r.waiting[key]
			if !ok {
				r.waiting[key] = c
			} else {
				delete(r.waiting, key)
			}
			r.mu.Unlock()
			if !ok {
				return
			}
			secret := make([]byte, 32)
			rand.Read(secret)
			s := hex.EncodeToString(secret)
			// The peers keep their ends open while they punch, as a
			// server keeps its link to the DP; this end is done.
			fmt.Fprintf(other, "%v %s\n", c.RemoteAddr(), s)
			fmt.Fprintf(c, "%v %s\n", other.RemoteAddr(), s)
			other.Close()
			c.Close()
		}()
	}
}

// meeting is what a peer learns from the rendezvous.
type meeting struct {
	conn   net.Conn // to the rendezvous, open while the peer punches
	local  netip.AddrPort
	peer   netip.AddrPort
	secret []byte
}

// meet dials the rendezvous at addr with dial (from a reusable port) and
// waits for the peer that sends the same key.
func meet(ctx context.Context, dial func(ctx context.Context, laddr, raddr netip.AddrPort) (net.Conn, error), addr netip.AddrPort, local netip.Addr, key string) (meeting, error) {
	c, err := dial(ctx, netip.AddrPortFrom(local, 0), addr)
	if err != nil {
		return meeting{}, err
	}
	m := meeting{conn: c, local: c.LocalAddr().(*net.TCPAddr).AddrPort()}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d) // the peer may never come
	}
	if _, err := fmt.Fprintf(c, "%s\n", key); err != nil {
		c.Close()
		return meeting{}, err
	}
	line, err := bufio.NewReaderSize(c, 128).ReadString('\n')
	if err != nil {
		c.Close()
		return meeting{}, fmt.Errorf("read from the rendezvous: %w", err)
	}
	peer, secret, _ := strings.Cut(strings.TrimSpace(line), " ")
	if m.peer, err = netip.ParseAddrPort(peer); err == nil {
		m.secret, err = hex.DecodeString(secret)
	}
	if err != nil {
		c.Close()
		return meeting{}, fmt.Errorf("the rendezvous said %q: %w", line, err)
	}
	c.SetDeadline(time.Time{})
	return m, nil
}
