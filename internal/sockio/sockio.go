//go:build unix

// Package sockio reads and writes the descriptors of sockets and pipes that
// never block (every socket of the net package, and the pipes that
// internal/mux makes with O_NONBLOCK) without the Go runtime's bookkeeping
// for a system call that might block.
//
// syscall.Read and syscall.Write tell the scheduler that the goroutine
// enters a system call. The scheduler wakes its monitor thread (sysmon) if
// it sleeps, and the monitor hands the goroutine's processor to another
// thread if the call takes more than 20 µs, after which the goroutine must
// get one back when the call returns: each of these is a futex call or a
// thread switch. A read or write of a socket that does not block never
// waits, so none of it is needed, and on a machine where a thread switch is
// dear it costs as much as the call: `scripts/bench-redis` spent half its
// CPU per request in it (docs/performance.md). The functions here make the
// same calls with syscall.RawSyscall.
//
// A descriptor given to them must not block: a call that blocked would hold
// its processor (GOMAXPROCS of them in all) until it returned. Under the
// race detector they are syscall's own functions, which tell the detector
// what the kernel read and wrote.
package sockio

import (
	"net"
	"os"
	"syscall"
)

// NonBlocking reports whether rc's descriptor may be given to the
// functions here: whether it does not block. A socket of the net package
// does not, unless its mode was changed through a duplicate that shares
// its file status (os.File's Fd on the File of a *net.TCPConn clears
// O_NONBLOCK on both, a common way to set a socket option); such a
// connection must be read and written with its own methods. Check it
// once per connection, before a raw call.
func NonBlocking(rc syscall.RawConn) bool {
	ok := false
	if err := rc.Control(func(fd uintptr) { ok = nonblocking(fd) }); err != nil {
		return false
	}
	return ok
}

// WriteConn writes all of p to the socket of rc, waiting for room as
// net.Conn's Write does (its deadline and Close end the wait), with the
// error net.Conn's Write would give. addr gives the connection's
// addresses for the error (nil: none).
func WriteConn(rc syscall.RawConn, p []byte, addr Addrs) (int, error) {
	var (
		n    int
		werr error
	)
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, e := Write(int(fd), p[n:])
			if e == syscall.EINTR {
				continue
			}
			if e == syscall.EAGAIN {
				return false // wait for room
			}
			if e != nil {
				werr = os.NewSyscallError("write", e)
				return true
			}
			n += m
		}
		return true
	})
	if err == nil {
		err = werr
	} else {
		err = unwrapOp(err)
	}
	if err != nil {
		return n, opError("write", addr, err)
	}
	return n, nil
}

// Addrs gives a connection's addresses for an error; net.Conn has them.
type Addrs interface {
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

func opError(op string, addr Addrs, err error) error {
	oe := &net.OpError{Op: op, Net: "tcp", Err: err}
	if addr != nil {
		oe.Source, oe.Addr = addr.LocalAddr(), addr.RemoteAddr()
		if oe.Addr != nil {
			oe.Net = oe.Addr.Network()
		}
	}
	return oe
}
