package main

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deployDir holds the files that run rtcp as a service (docs/operating.md).
const deployDir = "../../deploy"

// unitCommand returns the command line of key (ExecStart) in the unit
// text, continuation lines joined.
func unitCommand(unit, key string) []string {
	unit = strings.ReplaceAll(unit, "\\\n", " ")
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// TestDeployUnits: the systemd units of deploy/ run commands whose flags
// rtcp takes, and systemd-analyze finds nothing to say about them and
// rates their exposure OK (2.0 or less), where it is installed (Debian's
// package systemd; .ci/run installs it).
func TestDeployUnits(t *testing.T) {
	units, err := filepath.Glob(filepath.Join(deployDir, "*.service"))
	if err != nil || len(units) < 2 {
		t.Fatalf("units in %s: %q, %v; want the DP's and expose's", deployDir, units, err)
	}
	// systemd-analyze wants the command to exist: the test's own binary
	// stands in for rtcp.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var verify []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		cmd := unitCommand(unit, "ExecStart")
		if len(cmd) < 2 || cmd[0] != "/usr/local/bin/rtcp" {
			t.Errorf("%s: ExecStart %q, want /usr/local/bin/rtcp COMMAND ...", u, cmd)
			continue
		}
		// -h after the unit's flags: each must exist and its value parse.
		args := append(cmd[1:], "-h")
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "%d", "/run/credentials/x")
		}
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
			t.Errorf("%s: rtcp %s: exit status %d, %s", u, strings.Join(args, " "), code, stderr.String())
		}
		for _, want := range []string{"Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
			if !strings.Contains(unit, "\n"+want+"\n") {
				t.Errorf("%s has no %s", u, want)
			}
		}
		if !strings.Contains(unit, "\nDynamicUser=yes\n") && !strings.Contains(unit, "\nUser=") {
			t.Errorf("%s runs as root: give it DynamicUser=yes or User=", u)
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/rtcp", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		verify = append(verify, p)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze in PATH (Debian's package systemd): the units are not verified")
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, verify...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, append([]string{"security", "--offline=true", "--threshold=20"}, verify...)...).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}

// TestDeployStaticBuild builds the command as deploy/Dockerfile does, with
// CGO_ENABLED=0, and checks that the binary is static (no interpreter, no
// shared library), so that it runs on an image with no libc, and that it
// runs.
func TestDeployStaticBuild(t *testing.T) {
	needSlow(t)
	docker, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0 go build -trimpath", "FROM gcr.io/distroless/static", "USER nonroot"} {
		if !bytes.Contains(docker, []byte(want)) {
			t.Errorf("deploy/Dockerfile has no %q", want)
		}
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	bin := filepath.Join(t.TempDir(), "rtcp")
	build := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("not an ELF binary (%v): this platform's static linking is not checked", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: it is not static", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q (%v): it is not static", bin, libs, err)
	}
	cmd := exec.Command(bin, "version")
	cmd.Stderr = io.Discard
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "rtcp ") {
		t.Errorf("%s version: %q, %v", bin, out, err)
	}
}
