package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHProxyCommand runs OpenSSH's ssh with "rtcp connect -stdio" as
// its ProxyCommand, to an sshd on loopback that "rtcp expose" serves as
// pi-7, as connect -h says to. ssh must remember the host key under the
// name it was given, which is why no HostKeyAlias is needed.
func TestSSHProxyCommand(t *testing.T) {
	needSlow(t)
	var tools []string
	for _, name := range []string{"ssh", "ssh-keygen", "sshd"} {
		p, err := exec.LookPath(name)
		if err != nil {
			p, err = exec.LookPath("/usr/sbin/" + name)
		}
		if err != nil {
			t.Skipf("no %s: %v", name, err)
		}
		tools = append(tools, p)
	}
	ssh, keygen, sshd := tools[0], tools[1], tools[2]
	me, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	bin := buildCommand(t)
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	for _, key := range []string{"host", "client"} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", file(key)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(file("client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	port := closedPort(t)[len("127.0.0.1:"):]
	config := fmt.Sprintf("Port %s\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
		port, file("host"), file("authorized_keys"))
	if err := os.WriteFile(file("authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file("sshd_config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := exec.Command(sshd, "-D", "-e", "-f", file("sshd_config"))
	logs, err := d.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Skipf("sshd: %v", err)
	}
	sshdLog := newOutput()
	ready := make(chan bool, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			fmt.Fprintln(sshdLog, sc.Text())
			if strings.HasPrefix(sc.Text(), "Server listening on") {
				ready <- true
			}
		}
		ready <- false
		io.Copy(io.Discard, logs)
	}()
	defer func() {
		d.Process.Signal(os.Interrupt)
		<-drained
		d.Wait()
	}()
	if !<-ready {
		<-drained
		t.Skipf("sshd did not start (it may need root):\n%s", sshdLog)
	}

	dp := mustLaunch(t, runDP, "-listen", "127.0.0.1:0")
	mustLaunch(t, runExpose, "-dp", dp.addr, "-name", "pi-7", "-to", "127.0.0.1:"+port)
	cmd := exec.CommandContext(t.Context(), ssh, "-F", "/dev/null", "-i", file("client"), "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile="+file("known_hosts"),
		"-o", "ProxyCommand="+bin+" connect -stdio -dp "+dp.addr+" -name %h",
		me.Username+"@pi-7", "echo rtcp-ok")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rtcp-ok") {
		t.Fatalf("ssh: %v\n%s\nsshd:\n%s", err, out, sshdLog)
	}
	if out, err := exec.Command(keygen, "-F", "pi-7", "-f", file("known_hosts")).CombinedOutput(); err != nil || len(out) == 0 {
		t.Errorf("ssh did not remember the host key under pi-7: %v\n%s", err, out)
	}
}
