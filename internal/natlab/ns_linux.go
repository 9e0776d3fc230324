package natlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Do runs f in the namespace and returns f's error. f runs on a goroutine
// of the namespace's own that is locked to an OS thread that joined the
// namespace once, when it started: a socket f creates belongs to the
// namespace for its whole life, wherever it is used afterwards, but
// goroutines f starts do not run in the namespace. f must not call
// t.FailNow or t.Fatal (it is not the test's goroutine).
//
// The namespace keeps its threads between calls: Do hands f to an idle
// one, and starts another only when all are busy (calls that overlap, such
// as two dials that wait for their connections). So a call costs a
// channel send and a switch of thread, not a new thread, a setns(2) and
// the thread's death. The threads are never unlocked, so they run nothing
// but Do's work; they end, with their goroutines, when the lab's test
// ends (before goleak looks), and a Do after that fails.
func (n *NS) Do(f func() error) error {
	w, err := n.worker()
	if err != nil {
		return err
	}
	w.work <- f
	err = <-w.done
	n.put(w)
	return err
}

// nsWorker is a goroutine locked to a thread in the namespace: it runs
// each f from work and sends its error on done, until work is closed.
type nsWorker struct {
	work   chan func() error
	done   chan error
	exited chan struct{} // closed once the goroutine (and its thread) ends
}

// nsPool is an NS's idle workers.
type nsPool struct {
	idle   []*nsWorker
	closed bool // the lab's test has ended: no more workers
}

// worker returns an idle worker of the namespace, or a new one.
func (n *NS) worker() (*nsWorker, error) {
	n.mu.Lock()
	if n.pool.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("natlab: namespace %s is removed: its test has ended", n.Name)
	}
	if k := len(n.pool.idle); k > 0 {
		w := n.pool.idle[k-1]
		n.pool.idle = n.pool.idle[:k-1]
		n.mu.Unlock()
		return w, nil
	}
	n.mu.Unlock()
	w := &nsWorker{work: make(chan func() error), done: make(chan error, 1), exited: make(chan struct{})}
	go w.run(n.Name)
	if err := <-w.done; err != nil {
		<-w.exited
		return nil, err
	}
	return w, nil
}

// put makes w idle again, or ends it if the lab's test has ended.
func (n *NS) put(w *nsWorker) {
	n.mu.Lock()
	closed := n.pool.closed
	if !closed {
		n.pool.idle = append(n.pool.idle, w)
	}
	n.mu.Unlock()
	if closed {
		close(w.work)
	}
}

// stop ends the namespace's idle workers and waits for them; those busy
// end when their f returns. Further calls of Do fail.
func (n *NS) stop() {
	n.mu.Lock()
	idle := n.pool.idle
	n.pool.idle, n.pool.closed = nil, true
	n.mu.Unlock()
	for _, w := range idle {
		close(w.work)
	}
	for _, w := range idle {
		<-w.exited
	}
}

// run joins the namespace name on a locked thread, says on done whether
// it could, then serves work. It never unlocks the thread: the thread ends
// with the goroutine rather than run anything else in the namespace.
func (w *nsWorker) run(name string) {
	defer close(w.exited)
	runtime.LockOSThread()
	fd, err := unix.Open(filepath.Join("/var/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		w.done <- fmt.Errorf("natlab: open namespace %s: %w", name, err)
		return
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		w.done <- fmt.Errorf("natlab: join namespace %s: %w", name, err)
		return
	}
	w.done <- nil
	for f := range w.work {
		w.done <- f()
	}
}

// removeStale removes the namespaces of natlab processes that have died
// (a test killed by its timeout runs no cleanup).
func removeStale(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("natlab: remove stale namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	}
}
