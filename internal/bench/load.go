// Package bench measures rtcp against raw TCP and against plain relays on
// loopback: the engine of "rtcp bench". The load generator, the sink it
// talks to and the reference relays are here; the rows (what is measured
// through what) are in bench.go.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// The sink's protocol. On accept it writes the greeting byte (so a client
// can time a dial to its first byte), then reads one mode byte:
//
//	modeThroughput  read to EOF, then answer one byte and close
//	modeEcho        echo until EOF, then close
//	modeIdle        read to EOF, then close
//	modeFlood       write 64 KiB chunks as fast as it can until a write
//	                fails (the client has closed), then close
//
// A client that closes right after the greeting is a dial measurement.
const (
	greeting       = '!'
	answer         = 'k'
	modeThroughput = 'T'
	modeEcho       = 'E'
	modeIdle       = 'I'
	modeFlood      = 'F'
)

// A halfCloser is a connection whose write side can be shut alone.
type halfCloser interface {
	CloseWrite() error
}

// Serve runs the sink on l until l is closed, then closes the
// connections still open and returns when their goroutines have ended.
func Serve(l net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// serveConn serves one sink connection.
func serveConn(c net.Conn) {
	defer c.Close()
	if _, err := c.Write([]byte{greeting}); err != nil {
		return
	}
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeThroughput:
		if drain(c) == nil {
			c.Write([]byte{answer})
		}
	case modeEcho:
		buf := make([]byte, 16<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	case modeIdle:
		// A small buffer: the sink must not be what an idle session
		// costs when it shares a process with the path measured.
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	case modeFlood:
		for {
			if _, err := c.Write(payload[:64<<10]); err != nil {
				return
			}
		}
	}
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// drain reads c to EOF.
func drain(c net.Conn) error {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	for {
		_, err := c.Read(*bp)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Relay is the reference relay: it accepts on l, dials to for each
// connection and copies both ways with io.Copy between the two
// *net.TCPConns (which Go splices on Linux), passing half-close on. It is
// what any relay written in Go can do at best, the row rtcp is compared
// with. It runs until l is closed and returns when its goroutines have
// ended.
func Relay(l net.Listener, to string) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		track(c, true)
		wg.Go(func() {
			defer track(c, false)
			defer c.Close()
			d, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			track(d, true)
			defer track(d, false)
			defer d.Close()
			in, out := c.(*net.TCPConn), d.(*net.TCPConn)
			var pwg sync.WaitGroup
			pwg.Go(func() {
				io.Copy(out, in)
				out.CloseWrite()
			})
			io.Copy(in, out)
			in.CloseWrite()
			pwg.Wait()
		})
	}
}

// A dialer opens one session to the sink through the path under test.
type dialer func(ctx context.Context) (net.Conn, error)

// open dials and reads the greeting, with a timeout for the whole.
func open(ctx context.Context, dial dialer) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != greeting {
		c.Close()
		if err == nil {
			err = fmt.Errorf("bad greeting %q", b[0])
		}
		return nil, fmt.Errorf("reading the sink's greeting: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// throughput opens conns sessions, sends on each for d (then half-closes
// and waits for the sink's answer, so the half-close must cross every
// hop) and returns the aggregate rate in bytes per second.
func throughput(ctx context.Context, dial dialer, conns int, d time.Duration) (float64, error) {
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := open(ctx, dial)
		if err != nil {
			return 0, err
		}
		cs = append(cs, c)
		if _, err := c.Write([]byte{modeThroughput}); err != nil {
			return 0, err
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		first error
	)
	start := time.Now()
	stop := start.Add(d)
	for _, c := range cs {
		wg.Go(func() {
			n, err := send(c, stop)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return 0, first
	}
	return float64(total) / elapsed.Seconds(), nil
}

var payload = make([]byte, 128<<10)

// send writes to c until stop, half-closes, and waits for the answer.
func send(c net.Conn, stop time.Time) (int64, error) {
	return sendUntil(c, stop, 30*time.Second)
}

// sendUntil is send that fails if the answer has not come grace after stop
// (a lost half-close above all), instead of hanging.
func sendUntil(c net.Conn, stop time.Time, grace time.Duration) (int64, error) {
	c.SetDeadline(stop.Add(grace))
	var n int64
	for time.Now().Before(stop) {
		w, err := c.Write(payload)
		n += int64(w)
		if err != nil {
			return n, fmt.Errorf("write: %w", err)
		}
	}
	hc, ok := c.(halfCloser)
	if !ok {
		return n, fmt.Errorf("%T cannot half-close", c)
	}
	if err := hc.CloseWrite(); err != nil {
		return n, fmt.Errorf("CloseWrite: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return n, fmt.Errorf("waiting for the sink's answer after CloseWrite (did the half-close cross every hop?): %w", err)
	}
	return n, nil
}

// echo measures n round trips of a 64-byte message on one session, after
// a warm-up, and returns them sorted.
func echo(ctx context.Context, dial dialer, n int) ([]time.Duration, error) {
	c, err := open(ctx, dial)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return nil, err
	}
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	warm := min(n/10+1, 200)
	rtts := make([]time.Duration, 0, n)
	for i := range n + warm {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if i >= warm {
			rtts = append(rtts, time.Since(t0))
		}
	}
	slices.Sort(rtts)
	return rtts, nil
}

// dialFirstByte measures n times from the start of a dial to the sink's
// greeting, one dial after the other, and returns them sorted.
func dialFirstByte(ctx context.Context, dial dialer, n int) ([]time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t0 := time.Now()
		c, err := open(ctx, dial)
		if err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
		c.Close()
	}
	slices.Sort(ds)
	return ds, nil
}

// held holds sessions open, each past its greeting: idle (the sink reads
// and sends nothing), or, if stalled is set, stalled: the sink floods
// each one and its client never reads, with a receive buffer of
// stalledReadBuffer so that the client's kernel takes little of what
// the path must then hold.
type held struct {
	stalled bool
	conns   []net.Conn
}

// stalledReadBuffer is the receive buffer (SO_RCVBUF) of a stalled
// session's client, where it is a TCP connection.
const stalledReadBuffer = 4096

// add opens n more sessions, workers at a time.
func (s *held) add(ctx context.Context, dial dialer, n int) error {
	mode, what := byte(modeIdle), "idle"
	if s.stalled {
		mode, what = modeFlood, "stalled"
	}
	const workers = 32
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		jobs = make(chan struct{})
	)
	for range workers {
		wg.Go(func() {
			for range jobs {
				c, err := open(ctx, dial)
				if err == nil {
					if rb, ok := c.(interface{ SetReadBuffer(int) error }); ok && s.stalled {
						err = rb.SetReadBuffer(stalledReadBuffer)
					}
					if err == nil {
						_, err = c.Write([]byte{mode})
					}
					if err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					s.conns = append(s.conns, c)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("opening %s sessions (%d open): %w", what, len(s.conns), errors.Join(errs[0]))
	}
	return ctx.Err()
}

func (s *held) close() {
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// percentile returns the p-th percentile of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)*p/100, len(ds)-1)]
}
