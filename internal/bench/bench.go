package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"rtcp/internal/delay"
)

// Config says what to measure and for how long. Zero fields take the
// defaults of a full run.
type Config struct {
	// Exe is the rtcp binary run as the DP, the servers, the reference
	// relays and the sink. Empty means this process's executable.
	Exe string

	// Transports are the -transport values of the rtcp rows, e.g. "json"
	// and "yamux". Default json and yamux.
	Transports []string

	// Pool is the -pool of the servers (ListenConfig.PoolSize). Default 4.
	Pool int

	// Duration of each throughput run. Default 3 s. At a round trip
	// (RTTs) a run lasts at least 50 round trips: 10 s at 200 ms.
	Duration time.Duration

	// Repeat is how many times each throughput run is made; the table
	// gives the median. Default 1.
	Repeat int

	// Echoes is the number of 64-byte round trips. Default 10000.
	Echoes int

	// Dials is the number of dials timed to their first byte. Default 300.
	Dials int

	// Sessions is the number of idle sessions held to measure memory.
	// A row holds fewer if a process on its path would run out of file
	// descriptors (the table says how many). Default 10000.
	Sessions int

	// Stalled is the number of stalled sessions held to measure what
	// readers that stop cost: the client never reads while the sink
	// floods each one. They are held on fresh processes of their own
	// (at RTT 0 only). Default 100; below 0, not measured.
	Stalled int

	// Rows, if not nil, selects the rows to run by name. The raw row
	// and the limits that the selected rows are compared with always run.
	Rows *regexp.Regexp

	// RTTs are the round trips the rows are run at, each a group of rows
	// in this order. At a round trip above 0 a delay link (package
	// internal/delay, a process of its own) holds every byte for RTT/2
	// each way, without limiting bandwidth, on the hop between the
	// server side and the DP: between "rtcp expose" or rtcp.Listen and
	// the DP, between the limit's two relays, between the in-process
	// limit's relay and the sink, and between raw TCP's load generator
	// and the sink. There memory is not measured, and echoes and dials
	// are each cut to what fits in Duration (at least 20). Default: just
	// 0, no delay link.
	RTTs []time.Duration

	// Progress receives a line per step. Nil is silent.
	Progress io.Writer

	// Library runs rtcp in this process for the rows "rtcp.Dial -> DP
	// -> rtcp.Listen" (the rtcp command gives it: the bench measures
	// package rtcp without importing it). Nil leaves those rows out.
	Library Library
}

// A Library runs a DP, and a server that serves every session of one
// name with p.Serve, in this process, and returns how a client dials the
// name, and stop, which ends them all.
type Library func(ctx context.Context, p LibraryPath) (dial func(context.Context) (net.Conn, error), stop func(), err error)

// LibraryPath is what a Library is asked to run.
type LibraryPath struct {
	Transport   string // the -transport of the row: "json", "yamux" or "tcp"
	Pool        int    // the server's pool of links (ListenConfig.PoolSize)
	MaxSessions int    // the sessions per server the DP admits, at least

	// Via returns the address the server reaches the DP at, given the
	// DP's own: the delay link's, at a round trip above 0.
	Via func(dpAddr string) (string, error)

	// Serve serves the server's sessions, accepted from l, until l is
	// closed.
	Serve func(l net.Listener) error
}

func (c *Config) defaults() error {
	if c.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this program to run the DP and servers: %w", err)
		}
		c.Exe = exe
	}
	if len(c.Transports) == 0 {
		c.Transports = []string{"json", "yamux"}
	}
	if c.Pool <= 0 {
		c.Pool = 4
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Repeat <= 0 {
		c.Repeat = 1
	}
	if c.Echoes <= 0 {
		c.Echoes = 10000
	}
	if c.Dials <= 0 {
		c.Dials = 300
	}
	if c.Sessions <= 0 {
		c.Sessions = 10000
	}
	if c.Stalled == 0 {
		c.Stalled = 100
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if len(c.RTTs) == 0 {
		c.RTTs = []time.Duration{0}
	}
	for _, rtt := range c.RTTs {
		if rtt < 0 {
			return fmt.Errorf("a negative round trip, %v", rtt)
		}
	}
	return nil
}

// A Row is what was measured through one path.
type Row struct {
	Name string
	// RTT is the round trip of the delay link between the server side
	// and the DP; 0: none.
	RTT time.Duration
	// Ref is the limit this row is compared with (nil for raw TCP and
	// for the limits themselves, which are compared with their own).
	Ref *Row

	MBps1, MBps8     float64 // throughput, 1 and 8 connections, 10^6 bytes/s
	EchoP50, EchoP99 time.Duration
	DialP50          time.Duration

	MemPerSession float64 // bytes of RSS per idle session; 0: not measured
	MemSessions   int     // idle sessions held for MemPerSession
	MemOf         string  // whose memory: "DP", "relay", "process"

	StalledMem      int64 // bytes of RSS growth for the stalled sessions held
	StalledSessions int   // stalled sessions held for StalledMem; 0: not measured

	Err error // why the row is incomplete
}

// Result is a whole run.
type Result struct {
	Config Config
	Raw    *Row // raw TCP at the first round trip
	Rows   []*Row
}

// A setup is a path under test, ready to dial.
type setup struct {
	dial   dialer
	memPID int    // whose RSS is the row's memory; 0: not measured
	memOf  string // what memPID is
	pids   []int  // processes that hold descriptors per session
	close  func()
}

// A spec is a row to run: its name, the row it is compared with, and how
// to build its path with a delay link of rtt on the hop between the
// server side and the DP.
type spec struct {
	name  string
	ref   string
	start func(ctx context.Context, sink string, rtt time.Duration) (*setup, error)
}

// Names of the reference rows.
const (
	rowRaw      = "raw TCP"
	rowLimit    = "limit: 2 Go relays (io.Copy, spliced)"
	rowLibLimit = "limit: 1 Go relay, in process"
)

// Run runs the benchmark and returns its rows, in the order of the table.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b := &runner{cfg: cfg, self: os.Getpid()}
	sink, err := b.startSink(ctx)
	if err != nil {
		return nil, err
	}
	defer sink.stop()

	specs := b.specs()
	res := &Result{Config: cfg}
	needed := map[string]bool{rowRaw: true}
	for _, s := range specs {
		if cfg.Rows == nil || cfg.Rows.MatchString(s.name) {
			needed[s.name] = true
			if s.ref != "" {
				needed[s.ref] = true
			}
		}
	}
	for _, rtt := range cfg.RTTs {
		byName := make(map[string]*Row)
		for _, s := range specs {
			if !needed[s.name] {
				continue
			}
			row := &Row{Name: s.name, RTT: rtt, Ref: byName[s.ref]}
			byName[s.name] = row
			if rtt > 0 {
				b.progress("RTT %v: %s", rtt, s.name)
			} else {
				b.progress("%s", s.name)
			}
			row.Err = b.runRow(ctx, s, b.sinkAddr, row)
			if row.Err != nil {
				b.progress("  failed: %v", row.Err)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if s.name == rowRaw && res.Raw == nil {
				res.Raw = row
			}
			res.Rows = append(res.Rows, row)
		}
	}
	return res, nil
}

type runner struct {
	cfg      Config
	self     int
	sinkPID  int
	sinkAddr string
}

func (b *runner) progress(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, "bench: "+format+"\n", args...)
}

var (
	reSink  = regexp.MustCompile(`^rtcp bench: sink listening on (\S+)`)
	reRelay = regexp.MustCompile(`^rtcp bench: relay listening on (\S+)`)
	reDelay = regexp.MustCompile(`^rtcp bench: delay listening on (\S+)`)
	reDP    = regexp.MustCompile(`msg="rtcp dp: listening" addr=(\S+)`)
	rePort  = regexp.MustCompile(`msg="rtcp dp: port" addr=(\S+)`)
	reServe = regexp.MustCompile(`msg="rtcp expose: serving" addr=(\S+)`)
)

// startSink runs the sink in a process of its own, so that its
// descriptors do not count against the bench's.
func (b *runner) startSink(ctx context.Context) (*proc, error) {
	p, err := startProc(b.cfg.Exe, "sink", "bench", "-child", "sink")
	if err != nil {
		return nil, err
	}
	got, err := p.expect(ctx, reSink)
	if err != nil {
		p.stop()
		return nil, err
	}
	b.sinkPID, b.sinkAddr = p.pid(), got[0]
	return p, nil
}

// A hop is where a setup reaches the far side of the hop between the
// server side and the DP: a delay link to it, or itself at RTT 0.
type hop struct {
	addr string
	p    *proc // the delay link; nil at RTT 0
}

// startHop starts a delay link of rtt to the address to, in a process of
// its own so that it neither takes the load generator's threads nor
// counts in the in-process rows' memory.
func (b *runner) startHop(ctx context.Context, rtt time.Duration, to string) (*hop, error) {
	if rtt <= 0 {
		return &hop{addr: to}, nil
	}
	p, err := startProc(b.cfg.Exe, "delay link", "bench", "-child", "delay", "-to", to, "-rtt", rtt.String())
	if err != nil {
		return nil, err
	}
	got, err := p.expect(ctx, reDelay)
	if err != nil {
		p.stop()
		return nil, err
	}
	return &hop{addr: got[0], p: p}, nil
}

// pids adds the delay link's process to pids.
func (h *hop) pids(pids ...int) []int {
	if h.p != nil {
		pids = append(pids, h.p.pid())
	}
	return pids
}

func (h *hop) stop() {
	if h.p != nil {
		h.p.stop()
	}
}

// specs lists every row in the order of the table.
func (b *runner) specs() []spec {
	pool := strconv.Itoa(b.cfg.Pool)
	specs := []spec{
		{name: rowRaw, start: b.startRaw},
		{name: rowLimit, start: b.startLimit},
	}
	for _, t := range b.cfg.Transports {
		specs = append(specs, spec{
			name: "rtcp dp -port + expose -transport " + t + " -pool " + pool,
			ref:  rowLimit,
			start: func(ctx context.Context, sink string, rtt time.Duration) (*setup, error) {
				return b.startCommand(ctx, sink, rtt, t)
			},
		})
	}
	specs = append(specs, spec{name: rowLibLimit, start: b.startLibLimit})
	for _, t := range b.cfg.Transports {
		if b.cfg.Library == nil {
			break
		}
		specs = append(specs, spec{
			name: "rtcp.Dial -> DP -> rtcp.Listen, " + t + ", pool " + pool + ", in process",
			ref:  rowLibLimit,
			start: func(ctx context.Context, sink string, rtt time.Duration) (*setup, error) {
				return b.startLibrary(ctx, rtt, t)
			},
		})
	}
	return specs
}

func tcpDialer(addr string) dialer {
	var d net.Dialer
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// startRaw reaches the sink straight, or through the delay link alone.
func (b *runner) startRaw(ctx context.Context, sink string, rtt time.Duration) (*setup, error) {
	h, err := b.startHop(ctx, rtt, sink)
	if err != nil {
		return nil, err
	}
	return &setup{dial: tcpDialer(h.addr), pids: h.pids(b.self, b.sinkPID), close: h.stop}, nil
}

// startLimit runs two reference relays, each a process, in the places
// of the DP and the server; the delay link is between them.
func (b *runner) startLimit(ctx context.Context, sink string, rtt time.Duration) (*setup, error) {
	server, err := startProc(b.cfg.Exe, "relay 2", "bench", "-child", "relay", "-to", sink)
	if err != nil {
		return nil, err
	}
	got, err := server.expect(ctx, reRelay)
	if err != nil {
		server.stop()
		return nil, err
	}
	h, err := b.startHop(ctx, rtt, got[0])
	if err != nil {
		server.stop()
		return nil, err
	}
	dp, err := startProc(b.cfg.Exe, "relay 1", "bench", "-child", "relay", "-to", h.addr)
	if err != nil {
		h.stop()
		server.stop()
		return nil, err
	}
	got, err = dp.expect(ctx, reRelay)
	if err != nil {
		dp.stop()
		h.stop()
		server.stop()
		return nil, err
	}
	return &setup{
		dial:   tcpDialer(got[0]),
		memPID: dp.pid(), memOf: "relay",
		pids:  h.pids(b.self, b.sinkPID, dp.pid(), server.pid()),
		close: func() { dp.stop(); h.stop(); server.stop() },
	}, nil
}

// startCommand runs "rtcp dp -port" and "rtcp expose" as processes; the
// server reaches the DP through the delay link.
func (b *runner) startCommand(ctx context.Context, sink string, rtt time.Duration, transport string) (*setup, error) {
	dp, err := startProc(b.cfg.Exe, "rtcp dp", "dp", "-listen", "127.0.0.1:0", "-port", "bench=127.0.0.1:0",
		"-grace", "1s", "-log-level", "warn", "-max-sessions-per-server", strconv.Itoa(2*b.cfg.Sessions+1000))
	if err != nil {
		return nil, err
	}
	got, err := dp.expect(ctx, reDP, rePort)
	if err != nil {
		dp.stop()
		return nil, err
	}
	dpAddr, port := got[0], got[1]
	h, err := b.startHop(ctx, rtt, dpAddr)
	if err != nil {
		dp.stop()
		return nil, err
	}
	server, err := startProc(b.cfg.Exe, "rtcp expose", "expose", "-dp", h.addr, "-name", "bench", "-to", sink,
		"-transport", transport, "-pool", strconv.Itoa(b.cfg.Pool), "-log-level", "warn")
	if err != nil {
		h.stop()
		dp.stop()
		return nil, err
	}
	if _, err := server.expect(ctx, reServe); err != nil {
		server.stop()
		h.stop()
		dp.stop()
		return nil, err
	}
	return &setup{
		dial:   tcpDialer(port),
		memPID: dp.pid(), memOf: "DP",
		pids:  h.pids(b.self, b.sinkPID, dp.pid(), server.pid()),
		close: func() { server.stop(); h.stop(); dp.stop() },
	}, nil
}

// inProcess runs serve(l) on a new loopback listener until the setup is
// closed.
type inProcess struct {
	wg     sync.WaitGroup
	closes []func()
}

func (p *inProcess) listen(serve func(net.Listener) error) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	p.wg.Go(func() { serve(l) })
	p.closes = append(p.closes, func() { l.Close() })
	return l.Addr().String(), nil
}

func (p *inProcess) close() {
	for i := len(p.closes) - 1; i >= 0; i-- {
		p.closes[i]()
	}
	p.wg.Wait()
}

// startLibLimit runs, in this process, the sink behind one reference
// relay; the delay link is between them.
func (b *runner) startLibLimit(ctx context.Context, _ string, rtt time.Duration) (*setup, error) {
	var p inProcess
	sink, err := p.listen(Serve)
	if err != nil {
		return nil, err
	}
	h, err := b.startHop(ctx, rtt, sink)
	if err != nil {
		p.close()
		return nil, err
	}
	relay, err := p.listen(func(l net.Listener) error { return Relay(l, h.addr) })
	if err != nil {
		h.stop()
		p.close()
		return nil, err
	}
	return &setup{
		dial:   tcpDialer(relay),
		memPID: b.self, memOf: "process",
		pids:  h.pids(b.self),
		close: func() { h.stop(); p.close() },
	}, nil
}

// startLibrary runs, in this process, a DiscoverPoint and a sink served
// through rtcp.Listen, which reaches the DP through the delay link;
// rtcp.Dial reaches the DP straight (Config.Library).
func (b *runner) startLibrary(ctx context.Context, rtt time.Duration, transport string) (*setup, error) {
	var h *hop
	dial, stop, err := b.cfg.Library(ctx, LibraryPath{
		Transport:   transport,
		Pool:        b.cfg.Pool,
		MaxSessions: 2*b.cfg.Sessions + 1000,
		Via: func(dpAddr string) (string, error) {
			var err error
			if h, err = b.startHop(ctx, rtt, dpAddr); err != nil {
				return "", err
			}
			return h.addr, nil
		},
		Serve: Serve,
	})
	if err != nil {
		if h != nil {
			h.stop()
		}
		return nil, err
	}
	if h == nil { // a Library that did not ask for the way to its DP
		stop()
		return nil, errors.New("bench: the in-process library did not reach its DP through LibraryPath.Via")
	}
	return &setup{
		dial:   dial,
		memPID: b.self, memOf: "process",
		pids:  h.pids(b.self),
		close: func() { stop(); h.stop() },
	}, nil
}

// runRow measures one row: memory per idle session first, on fresh
// processes (at RTT 0 only), then dial to first byte, echo and
// throughput; then, on fresh processes again, the memory of stalled
// sessions (at RTT 0 only).
func (b *runner) runRow(ctx context.Context, s spec, sink string, row *Row) error {
	if err := b.runPath(ctx, s, sink, row); err != nil {
		return err
	}
	if row.RTT == 0 && b.cfg.Stalled > 0 {
		return b.runStalled(ctx, s, sink, row)
	}
	return nil
}

// warmUp dials a few sessions, so that the links of a pool come up and
// first-use setup is done.
func warmUp(ctx context.Context, st *setup) error {
	for range 3 {
		c, err := open(ctx, st.dial)
		if err != nil {
			return fmt.Errorf("first dial: %w", err)
		}
		c.Close()
	}
	return nil
}

// runPath measures all but stalled sessions on one path.
func (b *runner) runPath(ctx context.Context, s spec, sink string, row *Row) error {
	st, err := s.start(ctx, sink, row.RTT)
	if err != nil {
		return err
	}
	defer st.close()
	if err := warmUp(ctx, st); err != nil {
		return err
	}
	if st.memPID != 0 && row.RTT == 0 {
		if err := b.measureIdle(ctx, st, row); err != nil {
			return fmt.Errorf("idle sessions: %w", err)
		}
		b.progress("  %.1f KiB per idle session (%s RSS, %d sessions)", row.MemPerSession/1024, row.MemOf, row.MemSessions)
	}
	ds, err := dialFirstByte(ctx, st.dial, b.fit(b.cfg.Dials, row.RTT))
	if err != nil {
		return fmt.Errorf("dial to first byte: %w", err)
	}
	row.DialP50 = percentile(ds, 50)
	rtts, err := echo(ctx, st.dial, b.fit(b.cfg.Echoes, row.RTT))
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	row.EchoP50, row.EchoP99 = percentile(rtts, 50), percentile(rtts, 99)
	b.progress("  dial to first byte p50 %v, echo p50 %v p99 %v", row.DialP50, row.EchoP50, row.EchoP99)
	if _, err := throughput(ctx, st.dial, 2, min(b.cfg.Duration/4, 250*time.Millisecond)); err != nil {
		return fmt.Errorf("throughput warm-up: %w", err)
	}
	if row.MBps1, err = b.throughput(ctx, st.dial, 1, row.RTT); err != nil {
		return fmt.Errorf("throughput, 1 connection: %w", err)
	}
	if row.MBps8, err = b.throughput(ctx, st.dial, 8, row.RTT); err != nil {
		return fmt.Errorf("throughput, 8 connections: %w", err)
	}
	b.progress("  %.0f MB/s with 1 connection, %.0f MB/s with 8", row.MBps1, row.MBps8)
	return nil
}

// runLength is how long a throughput run at round trip rtt lasts:
// Duration, but at least 50 round trips. A session's flow-control window
// starts small and takes about 5 round trips to grow to the path (as TCP's
// slow start does), 1 s at 200 ms, while the limit's TCP sees only
// loopback and pays nothing for the round trip; a 3 s run would mostly
// measure the growth.
func (b *runner) runLength(rtt time.Duration) time.Duration {
	return max(b.cfg.Duration, 50*rtt)
}

// fit cuts n round trips at rtt to what fits in a throughput run's
// Duration, but not below 20.
func (b *runner) fit(n int, rtt time.Duration) int {
	if rtt <= 0 {
		return n
	}
	return min(n, max(20, int(b.cfg.Duration/rtt)))
}

// throughput returns the median of Repeat throughput runs at round trip
// rtt, in MB/s.
func (b *runner) throughput(ctx context.Context, dial dialer, conns int, rtt time.Duration) (float64, error) {
	rates := make([]float64, b.cfg.Repeat)
	for i := range rates {
		r, err := throughput(ctx, dial, conns, b.runLength(rtt))
		if err != nil {
			return 0, err
		}
		rates[i] = r / 1e6
	}
	slices.Sort(rates)
	return rates[len(rates)/2], nil
}

// runStalled measures stalled sessions on a path of its own: in the
// processes the other measurements used, what the idle sessions and the
// throughput runs freed is still in the heap, and the stalled sessions'
// buffers would reuse it instead of growing the RSS.
func (b *runner) runStalled(ctx context.Context, s spec, sink string, row *Row) error {
	st, err := s.start(ctx, sink, row.RTT)
	if err != nil {
		return err
	}
	defer st.close()
	if st.memPID == 0 {
		return nil
	}
	if err := warmUp(ctx, st); err != nil {
		return err
	}
	if err := b.measureStalled(ctx, st, row); err != nil {
		return fmt.Errorf("stalled sessions: %w", err)
	}
	return nil
}

// measureStalled holds Stalled stalled sessions (the sink floods each one,
// its client never reads) and takes the growth of the RSS of st.memPID
// once it has settled: what the path buffers for readers that stop.
// Then it closes them and waits for the processes to let their sockets
// go.
func (b *runner) measureStalled(ctx context.Context, st *setup, row *Row) error {
	base, err := b.baseRSS(st)
	if err != nil {
		return err
	}
	sock0 := make([]int, len(st.pids))
	for i, pid := range st.pids {
		if sock0[i], err = sockets(pid); err != nil {
			return err
		}
	}
	s := held{stalled: true}
	defer func() {
		s.close()
		b.settleSockets(st.pids, sock0)
	}()
	q0, err := queued([]int{st.memPID})
	if err != nil {
		return err
	}
	if err := s.add(ctx, st.dial, b.cfg.Stalled); err != nil {
		return err
	}
	after, q, ok, err := settledFlood(st.memPID, st.pids)
	if err != nil {
		return err
	}
	if !ok {
		b.progress("  the floods still moved after %v", floodSettle)
	}
	// Bytes a stream keeps in pipes (internal/mux, queue.go) are the
	// process's memory too, though its RSS does not show them.
	p, err := piped(st.memPID)
	if err != nil {
		return err
	}
	row.StalledSessions = len(s.conns)
	row.StalledMem = after - base + p
	row.MemOf = st.memOf
	b.progress("  %.1f MB for %d stalled sessions (%s RSS and pipes, %.1f MB in pipes; and %.0f MB more in the kernel's queues of its sockets)",
		float64(row.StalledMem)/1e6, row.StalledSessions, row.MemOf, float64(p)/1e6, float64(q-q0[0])/1e6)
	return nil
}

// baseRSS returns the RSS of st.memPID before sessions are held. When
// that is this process, it first closes the pipes earlier splices left in
// Go's pool (a finalizer closes them after the pool is dropped) and gives
// back what earlier rows freed.
func (b *runner) baseRSS(st *setup) (int64, error) {
	if st.memPID == b.self {
		runtime.GC()
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
		debug.FreeOSMemory()
	}
	return rss(st.memPID)
}

// measureIdle holds up to Sessions idle sessions and takes the growth of
// the RSS of st.memPID per session. It opens a probe of sessions first to
// learn how many descriptors a session costs each process on the path,
// and holds no more than the scarcest one can afford.
func (b *runner) measureIdle(ctx context.Context, st *setup, row *Row) error {
	base, err := b.baseRSS(st)
	if err != nil {
		return err
	}
	fd0 := make([]int, len(st.pids))
	for i, pid := range st.pids {
		if fd0[i], err = fds(pid); err != nil {
			return err
		}
	}
	sock0 := make([]int, len(st.pids))
	for i, pid := range st.pids {
		if sock0[i], err = sockets(pid); err != nil {
			return err
		}
	}
	var s held
	defer func() {
		s.close()
		b.settleSockets(st.pids, sock0)
	}()
	probe := min(100, b.cfg.Sessions)
	if err := s.add(ctx, st.dial, probe); err != nil {
		return err
	}
	per := make([]float64, len(st.pids))
	for i, pid := range st.pids {
		now, err := fds(pid)
		if err != nil {
			return err
		}
		per[i] = float64(now-fd0[i]) / float64(probe)
	}
	// Add sessions in batches, each at most half of what the scarcest
	// process's free descriptors allow by the probe's count, read afresh
	// before each batch: the probe's count may be low (sessions may
	// reuse pipes that earlier ones left in Go's pool), and halving the
	// rest each time cannot overshoot by more than that error.
	for len(s.conns) < b.cfg.Sessions {
		next := min(1000, b.cfg.Sessions-len(s.conns))
		for i, pid := range st.pids {
			if per[i] <= 0 {
				continue
			}
			now, err := fds(pid)
			if err != nil {
				return err
			}
			limit, err := fdLimit(pid)
			if err != nil {
				return err
			}
			const reserve = 128 // listeners, the runtime's own, a margin
			next = min(next, int(float64(limit-now-reserve)/per[i]/2))
		}
		if next < 10 {
			break
		}
		if err := s.add(ctx, st.dial, next); err != nil {
			return err
		}
	}
	after, err := settledRSS(st.memPID)
	if err != nil {
		return err
	}
	row.MemSessions = len(s.conns)
	row.MemPerSession = float64(after-base) / float64(row.MemSessions)
	row.MemOf = st.memOf
	return nil
}

// settledRSS reads the RSS of pid until it stops growing (the last
// sessions' goroutines and buffers are in place), for up to 3 s.
func settledRSS(pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	for range 15 {
		time.Sleep(200 * time.Millisecond)
		now, err := rss(pid)
		if err != nil {
			return 0, err
		}
		if now-last < last/200 {
			return max(now, last), nil
		}
		last = now
	}
	return last, nil
}

// floodSettle bounds settledFlood's wait.
const floodSettle = 30 * time.Second

// settledFlood waits until the floods of stalled sessions have stopped
// moving: twice in a row, in 200 ms, the RSS of pid has grown by less
// than 0.5 % or 1 MiB (a test's process under the race detector grows by
// about that on its own) and the bytes in the kernel's queues of the
// sockets of pids and pid have changed by less than 0.5 % or 256 KiB in
// all; for up to floodSettle. The RSS alone may look settled while the
// floods are still filling the kernel's socket buffers (on loopback one
// socket takes up to 4 MiB) before they back up into the path's own; the
// queues alone, while bytes flow through full ones into a growing
// buffer. It returns the RSS and the queued bytes of pid, and whether
// they settled.
func settledFlood(pid int, pids []int) (int64, int64, bool, error) {
	sum := func(q []int64) (n int64) {
		for _, v := range q {
			n += v
		}
		return n
	}
	all := []int{pid} // pid first
	for _, p := range pids {
		if p != pid {
			all = append(all, p)
		}
	}
	last, err := rss(pid)
	if err != nil {
		return 0, 0, false, err
	}
	lastQ, err := queued(all)
	if err != nil {
		return 0, 0, false, err
	}
	calm := 0
	for range floodSettle / (200 * time.Millisecond) {
		time.Sleep(200 * time.Millisecond)
		now, err := rss(pid)
		if err != nil {
			return 0, 0, false, err
		}
		q, err := queued(all)
		if err != nil {
			return 0, 0, false, err
		}
		moved := sum(q) - sum(lastQ)
		if now-last < max(last/200, 1<<20) && max(moved, -moved) <= max(sum(q)/200, 256<<10) {
			calm++
		} else {
			calm = 0
		}
		last, lastQ = max(now, last), q
		if calm == 2 {
			return last, q[0], true, nil
		}
	}
	return last, lastQ[0], false, nil
}

// settleSockets waits (up to 10 s) until the processes have closed the
// sockets of the sessions just ended, so that the next measurement does
// not run beside their teardown. (Not all descriptors: Go keeps the pipes
// of ended splices in a pool until a garbage collection.)
func (b *runner) settleSockets(pids, want []int) {
	for range 100 {
		done := true
		for i, pid := range pids {
			if n, err := sockets(pid); err == nil && n > want[i]+16 {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Child runs a helper process of the bench: role "sink" (the server the
// load generator talks to), "relay" (the reference relay, to the address
// to) or "delay" (a delay link of rtt to the address to). It prints its
// address on stderr and runs until ctx ends.
func Child(ctx context.Context, role, to string, rtt time.Duration, stderr io.Writer) error {
	var serve func(net.Listener) error
	switch role {
	case "sink":
		serve = Serve
	case "relay", "delay":
		if to == "" {
			return fmt.Errorf("a %s needs -to", role)
		}
		if role == "relay" {
			serve = func(l net.Listener) error { return Relay(l, to) }
		} else {
			r := &delay.Relay{To: to, RTT: rtt}
			serve = r.Serve
		}
	default:
		return fmt.Errorf("unknown -child role %q (want sink, relay or delay)", role)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "rtcp bench: %s listening on %s\n", role, l.Addr())
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	err = serve(l)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
