// Package etcdtest starts etcd processes for tests: one member on loopback
// ports, its data in a test directory, stopped when the test ends. A test
// without an etcd binary on PATH is skipped with a message that names the
// package to install (Debian's etcd-server; .ci/run installs it).
package etcdtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Server is an etcd process of a test. Stop and Start stop it and start it
// again with its data, on the same ports.
type Server struct {
	// Endpoint is its client URL, http://127.0.0.1:PORT.
	Endpoint string

	t       testing.TB
	args    []string
	cmd     *exec.Cmd
	logDone chan struct{}
}

// Start starts an etcd for the test, or skips the test if there is no
// etcd binary. The etcd is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Helper()
		t.Skip("no etcd binary on PATH: install the etcd-server package (apt-get install etcd-server) to run the cluster tests; .ci/run does")
	}
	client, peer := freePort(t), freePort(t)
	e := &Server{
		t:        t,
		Endpoint: "http://" + client,
		args: []string{bin,
			"--name", "rtcp-test",
			"--data-dir", t.TempDir(),
			"--listen-client-urls", "http://" + client,
			"--advertise-client-urls", "http://" + client,
			"--listen-peer-urls", "http://" + peer,
			"--initial-advertise-peer-urls", "http://" + peer,
			"--initial-cluster", "rtcp-test=http://" + peer,
			"--logger=zap", "--log-outputs=stderr",
		},
	}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs etcd again after Stop, and returns when it serves clients.
func (e *Server) Start() {
	e.t.Helper()
	cmd := exec.Command(e.args[0], e.args[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("starting etcd: %v", err)
	}
	e.cmd = cmd
	e.logDone = make(chan struct{})
	ready := make(chan struct{})
	var tail []string // the last lines, to show if etcd fails to start
	go func() {
		defer close(e.logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if !signalled {
				tail = append(tail[max(len(tail)-20, 0):], line)
				if strings.Contains(line, "ready to serve client requests") || strings.Contains(line, "serving client traffic") {
					close(ready)
					signalled = true
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-ready:
	case <-e.logDone:
		cmd.Wait()
		e.cmd = nil
		e.t.Fatalf("etcd exited before it was ready:\n%s", strings.Join(tail, "\n"))
	case <-t.C:
		e.Stop()
		e.t.Fatal("etcd was not ready within 30 s")
	}
}

// Stop kills etcd and waits for it to exit.
func (e *Server) Stop() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	<-e.logDone
	e.cmd.Wait()
	e.cmd = nil
}

func (e *Server) String() string { return fmt.Sprintf("etcd at %s", e.Endpoint) }
