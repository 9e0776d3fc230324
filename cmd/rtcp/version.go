package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", `
Print the module version and the source revision this rtcp was built
from, and the Go release and platform it was built with, on one line;
"rtcp -version" does the same. A revision ending in "+modified" was
built from a tree with changes not committed.

Examples:

	rtcp version
	rtcp -version`)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(bi))
	return nil
}

// versionLine describes the build bi (nil: no build information) as
// "rtcp VERSION revision REV (TIME) GO OS/ARCH".
func versionLine(bi *debug.BuildInfo) string {
	version, goVersion := "(unknown)", runtime.Version()
	settings := map[string]string{"GOOS": runtime.GOOS, "GOARCH": runtime.GOARCH}
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rtcp %s", version)
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += "+modified"
		}
		fmt.Fprintf(&b, " revision %s", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
	} else {
		b.WriteString(" revision unknown (built outside a git checkout, or with -buildvcs=false)")
	}
	fmt.Fprintf(&b, " %s %s/%s", goVersion, settings["GOOS"], settings["GOARCH"])
	return b.String()
}
