package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"rtcp"
	"rtcp/internal/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [-quick] [-transports LIST] [-pool N] [-duration D] [-repeat N] [-echoes N] [-dials N] [-sessions N] [-stalled N] [-rows REGEXP] [-rtt D]...", `
Measure, on loopback and with one load generator, raw TCP; the limit, the
same topology built from two plain Go relays that io.Copy between TCP
connections (spliced on Linux); rtcp's command path ("rtcp dp -port" and
"rtcp expose", processes of this binary) in each transport; and the
library path (rtcp.Dial -> DiscoverPoint -> rtcp.Listen in this process)
beside a one-relay limit. Each row gets throughput with 1 and 8
connections, the 64-byte echo round trip, the time from dial to the
server's first byte, and the memory per idle session, and each figure its
ratio to the row's limit and to raw TCP; and the memory that -stalled
sessions whose client never reads, while the sink floods them, cost the
DP (relay, process) in all. The table is Markdown on stdout,
progress on stderr. A full run takes a few minutes, -quick under one.

With -rtt (repeatable: -rtt 0 -rtt 50ms -rtt 200ms) the rows run once per
round trip, with a delay link of that round trip on the hop between the
server side and the DP (rtcp expose or rtcp.Listen, and the DP): a relay
that holds every byte for RTT/2 each way without limiting bandwidth (a
connect and the first byte back take one RTT, as over a link that carries
data with its SYN). The limits get the same link on the same hop (between
their relays), raw TCP on its only one, and each round trip's ratios are
to its own limit. A throughput run there lasts at least 50 round trips
(10 s at 200 ms): the windows take about 5 to grow to the path. Memory is
not measured, and echoes and dials are cut to what fits in -duration (at
least 20 each).

Examples:

	rtcp bench -quick
	rtcp bench -transports yamux,tcp -rtt 0 -rtt 50ms
	rtcp bench -rows 'dp -port' -repeat 5`)
	quick := fs.Bool("quick", false, "short runs: 1s throughput run once, 2000 echoes, 100 dials, 2000 idle sessions (flags given explicitly win)")
	transports := fs.String("transports", "json,yamux,tcp", "comma-separated `list` of -transport values to measure")
	pool := fs.Int("pool", 4, "links per server (expose -pool, ListenConfig.PoolSize)")
	duration := fs.Duration("duration", 3*time.Second, "length of each throughput run")
	repeat := fs.Int("repeat", 3, "throughput runs per figure; the table gives the median")
	echoes := fs.Int("echoes", 10000, "64-byte round trips timed")
	dials := fs.Int("dials", 300, "dials timed to the first byte")
	sessions := fs.Int("sessions", 10000, "idle sessions held to measure memory (fewer if a process would run out of file descriptors)")
	stalled := fs.Int("stalled", 100, "stalled sessions held to measure their memory: the client never reads while the sink floods each (0: none)")
	rows := fs.String("rows", "", "run only the rows whose name matches `regexp` (and the rows they are compared with)")
	var rtts durationsFlag
	fs.Var(&rtts, "rtt", "run the rows with a delay link of round trip `duration` between the server side and the DP (repeatable: a group of rows each; default 0, no link)")
	exe := fs.String("exe", "", "rtcp `binary` to run the DP, servers and helpers with (default: this one)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this process (load generator and in-process rows) to `file`")
	child := fs.String("child", "", internalUsage+"run as the bench's `role` sink, relay or delay (a delay link of -rtt)")
	to := fs.String("to", "", internalUsage+"where a -child relay or delay connects")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	for _, rtt := range rtts {
		if rtt < 0 {
			return usageErrorf(fs, "-rtt %v: a round trip cannot be negative", rtt)
		}
	}
	if *child != "" {
		var rtt time.Duration
		if len(rtts) > 0 {
			rtt = rtts[len(rtts)-1]
		}
		return bench.Child(ctx, *child, *to, rtt, stderr)
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := bench.Config{
		Exe:        *exe,
		Transports: strings.Split(*transports, ","),
		Pool:       *pool,
		Duration:   *duration,
		Repeat:     *repeat,
		Echoes:     *echoes,
		Dials:      *dials,
		Sessions:   *sessions,
		Stalled:    *stalled,
		RTTs:       rtts,
		Progress:   stderr,
		Library:    benchLibrary,
	}
	if *quick {
		for name, v := range map[string]func(){
			"duration": func() { cfg.Duration = time.Second },
			"repeat":   func() { cfg.Repeat = 1 },
			"echoes":   func() { cfg.Echoes = 2000 },
			"dials":    func() { cfg.Dials = 100 },
			"sessions": func() { cfg.Sessions = 2000 },
		} {
			if !set[name] {
				v()
			}
		}
	}
	if *rows != "" {
		re, err := regexp.Compile(*rows)
		if err != nil {
			return usageErrorf(fs, "-rows: %v", err)
		}
		cfg.Rows = re
	}
	if *pool < 1 || *repeat < 1 {
		return usageErrorf(fs, "-pool and -repeat must be at least 1")
	}
	switch {
	case *stalled < 0:
		return usageErrorf(fs, "-stalled %d: want a number of sessions, or 0 for none", *stalled)
	case *stalled == 0:
		cfg.Stalled = -1 // bench.Config's zero means its default
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start, load := time.Now(), bench.LoadAverage()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rtcp bench %s\n\n", strings.Join(args, " "))
	fmt.Fprintf(stdout, "Machine: %s\n", bench.Machine())
	fmt.Fprintf(stdout, "Settings: throughput %v per run, median of %d; %d echoes, %d dials, up to %d idle sessions, %d stalled sessions, pool %d; took %v\n",
		cfg.Duration, cfg.Repeat, cfg.Echoes, cfg.Dials, cfg.Sessions, max(0, *stalled), cfg.Pool, time.Since(start).Round(time.Second))
	fmt.Fprintf(stdout, "Load average (1 min): %s at the start, %s at the end\n\n", load, bench.LoadAverage())
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s", bench.Legend)
	if res.Delayed() {
		fmt.Fprintf(stdout, "\n%s", bench.LegendRTT)
	}
	return nil
}

// durationsFlag is a repeatable flag of durations.
type durationsFlag []time.Duration

func (f *durationsFlag) String() string {
	s := make([]string, len(*f))
	for i, d := range *f {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

func (f *durationsFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 50ms")
	}
	*f = append(*f, d)
	return nil
}

// benchLibrary runs the in-process rows of rtcp bench (bench.Library): a
// DiscoverPoint on loopback, a server of the name "bench" that reaches it
// through p.Via, and a Dialer that reaches it straight.
func benchLibrary(ctx context.Context, p bench.LibraryPath) (func(context.Context) (net.Conn, error), func(), error) {
	t, err := rtcp.ParseTransport(p.Transport)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	dp := &rtcp.DiscoverPoint{MaxSessionsPerServer: p.MaxSessions}
	var wg sync.WaitGroup
	wg.Go(func() { dp.Serve(ln) })
	stopDP := func() {
		dp.Close()
		ln.Close()
		wg.Wait()
	}
	via, err := p.Via(ln.Addr().String())
	if err != nil {
		stopDP()
		return nil, nil, err
	}
	lc := rtcp.ListenConfig{Transport: t, PoolSize: p.Pool}
	l, err := lc.Listen(ctx, via, "bench")
	if err != nil {
		stopDP()
		return nil, nil, err
	}
	wg.Go(func() { p.Serve(l) })
	d := rtcp.Dialer{Transport: t}
	addr := ln.Addr().String()
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, addr, "bench") }
	return dial, func() { l.Close(); stopDP() }, nil
}
