package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Columns of the table, in order.
var Columns = []string{
	"path",
	"1 conn MB/s",
	"8 conns MB/s",
	"echo p50",
	"echo p99",
	"dial to 1st byte p50",
	"memory / idle session",
	"stalled sessions, MB",
}

// WriteTable writes the result as a Markdown table: each figure, then in
// parentheses its ratio to the row's limit and to raw TCP at the same
// round trip. Throughput ratios above 1 are better; latency and memory
// ratios below 1 are. When a row has a round trip above 0, each round
// trip's rows follow a heading row that names it.
func (r *Result) WriteTable(w io.Writer) error {
	raws := make(map[time.Duration]*Row)
	for _, x := range r.Rows {
		if x.Name == rowRaw && x.Ref == nil {
			raws[x.RTT] = x
		}
	}
	var b strings.Builder
	row := func(cells ...string) {
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	row(Columns...)
	sep := make([]string, len(Columns))
	for i := range sep {
		sep[i] = "---:"
	}
	sep[0] = "---"
	row(sep...)
	grouped := r.Delayed()
	for i, x := range r.Rows {
		if grouped && (i == 0 || r.Rows[i-1].RTT != x.RTT) {
			heading := make([]string, len(Columns))
			heading[0] = fmt.Sprintf("**RTT %v** between the server side and the DP", x.RTT)
			if x.RTT == 0 {
				heading[0] = "**RTT 0**: loopback, no delay link"
			}
			row(heading...)
		}
		raw := raws[x.RTT]
		if raw == nil {
			raw = r.Raw
		}
		ref := x.Ref
		if ref == nil && x != raw {
			ref = x // a limit: 1.00 of itself
		}
		if x.Err != nil {
			cells := make([]string, len(Columns))
			cells[0], cells[1] = x.Name, "failed: "+strings.ReplaceAll(x.Err.Error(), "|", "/")
			row(cells...)
			continue
		}
		row(x.Name,
			r.rate(x.MBps1, ref, raw, func(y *Row) float64 { return y.MBps1 }),
			r.rate(x.MBps8, ref, raw, func(y *Row) float64 { return y.MBps8 }),
			r.time(x.EchoP50, ref, raw, func(y *Row) time.Duration { return y.EchoP50 }),
			r.time(x.EchoP99, ref, raw, func(y *Row) time.Duration { return y.EchoP99 }),
			r.time(x.DialP50, ref, raw, func(y *Row) time.Duration { return y.DialP50 }),
			mem(x, ref),
			stalled(x),
		)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Delayed reports whether a row was run with a delay link (an RTT above
// 0): the table then has a heading row per round trip, and LegendRTT
// applies.
func (r *Result) Delayed() bool {
	for _, x := range r.Rows {
		if x.RTT > 0 {
			return true
		}
	}
	return false
}

// ratios formats "(× ref / × raw)" for v; either is left out when it
// cannot be computed.
func ratios(v float64, ref, raw *Row, get func(*Row) float64, isRaw bool) string {
	if isRaw {
		return ""
	}
	var parts []string
	if ref != nil && ref.Err == nil && get(ref) > 0 {
		parts = append(parts, fmt.Sprintf("%.2f", v/get(ref)))
	} else {
		parts = append(parts, "-")
	}
	if raw != nil && raw.Err == nil && get(raw) > 0 {
		parts = append(parts, fmt.Sprintf("%.2f", v/get(raw)))
	} else {
		parts = append(parts, "-")
	}
	return " (" + strings.Join(parts, " / ") + ")"
}

func (r *Result) rate(v float64, ref, raw *Row, get func(*Row) float64) string {
	return fmt.Sprintf("%.0f", v) + ratios(v, ref, raw, get, ref == nil)
}

func (r *Result) time(v time.Duration, ref, raw *Row, get func(*Row) time.Duration) string {
	f := func(y *Row) float64 { return float64(get(y)) }
	return formatTime(v) + ratios(float64(v), ref, raw, f, ref == nil)
}

// formatTime gives loopback's times in µs, a round trip's in ms.
func formatTime(v time.Duration) string {
	if v >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(v)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(v)/float64(time.Microsecond))
}

func mem(x, ref *Row) string {
	if x.MemSessions == 0 {
		return "-"
	}
	s := fmt.Sprintf("%.1f KiB", x.MemPerSession/1024)
	if ref != nil && ref != x && ref.Err == nil && ref.MemPerSession > 0 {
		s += fmt.Sprintf(" (%.2f)", x.MemPerSession/ref.MemPerSession)
	}
	return s + fmt.Sprintf(", %s, %d", x.MemOf, x.MemSessions)
}

// stalled gives no ratio: the limit's relays splice, so what backs up
// behind a stalled reader waits in the kernel's socket queues, not in
// their RSS, and their figure is about 0.
func stalled(x *Row) string {
	if x.StalledSessions == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f, %s, %d", float64(x.StalledMem)/1e6, x.MemOf, x.StalledSessions)
}

// Legend explains the table's cells.
const Legend = `Each cell: the figure, then (its ratio to the row's limit / to raw TCP).
Throughput is 10^6 bytes/s: each connection sends for the duration, half-closes
and waits for the sink's one-byte answer, so the half-close crosses every hop.
Echo is the round trip of 64 bytes on one connection; dial to 1st byte runs
from the start of a dial to the server's first byte. Memory is the growth of a
process's RSS per idle session held (VmRSS, /proc/PID/status), then whose RSS
(DP: the rtcp dp process; relay: the limit's first relay; process: the bench
process, which holds client, DP and server of the in-process rows) and how
many sessions were held (fewer than asked when a process on the path would
run out of file descriptors: an idle spliced relay holds a pipe per direction).
Stalled sessions: the growth of the same process's RSS, plus the bytes in its
pipes (where rtcp keeps a burst its destination had no room for), in 10^6
bytes, for all of the sessions held (the last number) whose client never reads (a 4 KiB
receive buffer) while the sink writes to each as fast as it can, taken once
the floods have stopped moving (RSS and the kernel's socket queues of every
process on the path steady), on processes started afresh for it. No ratio:
the limit's relays splice, so what backs up in them waits in the kernel's
socket queues, not in their RSS (the progress lines on stderr give the
kernel's share, which is not in this figure).
The rtcp rows are compared with the 2-relay limit, the in-process rows with the
1-relay limit.
`

// LegendRTT explains the rows run at a round trip.
const LegendRTT = `At an RTT above 0, a delay link (a user-space relay in a process of its own)
holds every byte for RTT/2 each way, without limiting bandwidth; it dials
onward at once, and what comes back leaves no sooner than one RTT after the
connect (a link that carries data with its SYN: a connect and the first byte
back take one RTT). It sits on the hop between the server side and the DP:
between rtcp expose or rtcp.Listen and the DP, between the limit's two relays,
between the in-process limit's relay and the sink, and between raw TCP's load
generator and the sink. Ratios are to the rows of the same RTT. Each
throughput run lasts at least 50 round trips (10 s at 200 ms): windows grow to
the path in about 5, as TCP's slow start does, while the limit's TCP sees only
loopback. There memory is not measured, and echoes and dials are each cut to
what fits in the throughput duration (at least 20).
`

// Machine describes the machine the bench runs on: CPUs, CPU model, Go.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), GOMAXPROCS %d, %s %s/%s",
		runtime.NumCPU(), model, runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// LoadAverage returns the 1-minute load average (/proc/loadavg), or "?".
// The bench shares the machine: a load above the number of CPUs while it
// runs means the figures are low and noisy.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
