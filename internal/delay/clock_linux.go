package delay

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A clock wakes its goroutine at a time to within tens of microseconds:
// a timerfd, waited for in the netpoller. Go's timers cannot: an idle
// runtime sleeps in epoll_wait, whose timeout is in whole milliseconds
// (runtime/netpoll_epoll.go: a wait under 1 ms takes 1 ms), so a timer
// due in a few hundred microseconds fires up to a millisecond late. A
// timerfd wakes that epoll_wait when it expires; no thread blocks and
// nothing spins.
type clock struct {
	fd int // f's; not through f.Fd, which would make it blocking
	f  *os.File
	rc syscall.RawConn
}

func newClock() (*clock, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &clock{fd: fd, f: f, rc: rc}, nil
}

// sleep returns d from now.
func (c *clock) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(c.fd, 0, &its, nil); err != nil {
		return os.NewSyscallError("timerfd_settime", err)
	}
	var (
		buf  [8]byte // the count of expirations
		rerr error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			_, rerr = unix.Read(int(fd), buf[:])
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	if rerr != nil {
		return os.NewSyscallError("read", rerr)
	}
	return nil
}

func (c *clock) close() { c.f.Close() }
