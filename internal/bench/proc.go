package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A proc is a child process of the bench: a DP, an indirect server, a
// reference relay or the sink, each an rtcp command.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // stderr, line by line, until the process ends

	mu   sync.Mutex
	tail []string // the last lines of stderr, for error messages
	done chan struct{}
}

// startProc runs exe with args; stderr is read line by line.
func startProc(exe, name string, args ...string) (*proc, error) {
	cmd := exec.Command(exe, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s %s): %w", name, exe, strings.Join(args, " "), err)
	}
	p := &proc{name: name, cmd: cmd, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			select {
			case p.lines <- line:
			default: // nobody waits for it: the tail keeps it
			}
		}
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// expect waits for lines matching each of res, in any order, and returns
// each one's first submatch.
func (p *proc) expect(ctx context.Context, res ...*regexp.Regexp) ([]string, error) {
	got := make([]string, len(res))
	left := len(res)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for left > 0 {
		select {
		case line := <-p.lines:
			for i, re := range res {
				if m := re.FindStringSubmatch(line); m != nil && got[i] == "" {
					got[i] = m[1]
					left--
				}
			}
		case <-p.done:
			return nil, fmt.Errorf("%s ended before it was ready: %s", p.name, p.lastLines())
		case <-t.C:
			return nil, fmt.Errorf("%s not ready after 30s: %s", p.name, p.lastLines())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return got, nil
}

func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "(no output)"
	}
	return strings.Join(p.tail, " | ")
}

// stop asks the process to end (SIGTERM), and kills it if it has not
// within a few seconds.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan struct{})
	go func() {
		p.cmd.Wait()
		close(waited)
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		p.cmd.Process.Kill()
		<-waited
	}
}

// rss returns the resident set size of process pid in bytes, from
// /proc/PID/status (VmRSS).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(v))
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status: memory is measured on Linux only")
}

// fds returns the number of open file descriptors of process pid.
func fds(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// sockets returns the number of sockets process pid has open.
func sockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, err := os.ReadDir(dir)
	n := 0
	for _, e := range es {
		if t, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(t, "socket:") {
			n++
		}
	}
	return n, err
}

// fdLimit returns the soft limit on open files of process pid.
func fdLimit(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return 1 << 30, nil
				}
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, errors.New("no \"Max open files\" in /proc/PID/limits")
}

// queued returns the bytes waiting in the kernel's send and receive
// queues of the TCP sockets that the processes pids have open (tx_queue
// and rx_queue of /proc/net/tcp and tcp6), each process's apart.
func queued(pids []int) ([]int64, error) {
	owner := make(map[string]int) // socket inode -> index in pids
	q := make([]int64, len(pids))
	for i, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		es, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			t, err := os.Readlink(dir + "/" + e.Name())
			if err != nil {
				continue // closed meanwhile
			}
			if inode, ok := strings.CutPrefix(t, "socket:["); ok {
				owner[strings.TrimSuffix(inode, "]")] = i
			}
		}
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(b)) {
			// sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			i, ok := owner[f[9]]
			if !ok {
				continue
			}
			tx, rx, ok := strings.Cut(f[4], ":")
			if !ok {
				continue
			}
			t, err1 := strconv.ParseInt(tx, 16, 64)
			r, err2 := strconv.ParseInt(rx, 16, 64)
			if err1 == nil && err2 == nil {
				q[i] += t + r
			}
		}
	}
	return q, nil
}
