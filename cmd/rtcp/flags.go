package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"rtcp"
)

// errHelp is returned by a command that printed its usage because -h was
// given: the exit status is 0.
var errHelp = flag.ErrHelp

// A usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a usageError that points to the command's help.
func usageErrorf(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...) + fmt.Sprintf(" (run 'rtcp %s -h' for usage)", fs.Name())}
}

// newFlagSet returns the flag set of the subcommand name. synopsis is
// the usage line after "rtcp", doc a paragraph that says what it does and
// ends with two or three examples. Its -h lists the flags in the groups
// of flagGroups, without the internal ones (help.go).
func newFlagSet(name, synopsis, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: rtcp %s\n\n%s\n", synopsis, strings.TrimSpace(doc))
		printFlags(w, fs)
	}
	return fs
}

// parseFlags parses args into fs. On -h it prints the usage to stdout
// and returns errHelp; a bad flag or a stray argument is a usageError.
// The flag package's own printing is silenced so that an error is one
// line.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	restore := explainDurations(fs)
	err := fs.Parse(args)
	restore()
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	}
	if err != nil {
		return usageErrorf(fs, "%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// explainDurations makes a bad value of each time.Duration flag of fs
// say what is wanted ("want a duration such as 10s") instead of the flag
// package's "parse error", until the returned function puts the flags
// back as they were (PrintDefaults names a flag's kind by its type).
func explainDurations(fs *flag.FlagSet) (restore func()) {
	var undo []func()
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				v := f.Value
				f.Value = durationValue{v}
				undo = append(undo, func() { f.Value = v })
			}
		}
	})
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// durationValue is a time.Duration flag whose errors say what it wants.
type durationValue struct{ flag.Value }

func (d durationValue) Set(s string) error {
	if d.Value.Set(s) == nil {
		return nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("want a duration such as %ss: a number needs a unit (ms, s, m or h)", s)
	}
	return errors.New("want a duration such as 10s, 1m30s or 500ms")
}

// required returns a usageError naming the first flag whose value is
// empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, name := range names {
		if fs.Lookup(name).Value.String() == "" {
			return usageErrorf(fs, "-%s is required", name)
		}
	}
	return nil
}

// logFlags adds -log-level and -log-format to fs; call the returned
// function after parsing for the logger they set up on stderr.
func logFlags(fs *flag.FlagSet, stderr io.Writer) func() *slog.Logger {
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	format := logFormat("text")
	fs.Var(&format, "log-format", "`format` of the log lines: text (key=value pairs) or json (a JSON object a line)")
	return func() *slog.Logger {
		opts := &slog.HandlerOptions{Level: level, ReplaceAttr: showReady}
		if format == "json" {
			return slog.New(slog.NewJSONHandler(stderr, opts))
		}
		return slog.New(slog.NewTextHandler(stderr, opts))
	}
}

// levelReady is the level of the lines that say a command is ready
// (listening, serving): above every level -log-level can set, so that
// they are logged whatever it says, and shown as INFO.
const levelReady = slog.LevelError + 4

// ready logs that a command is ready: msg ("rtcp dp: listening") and
// args, the first of which is usually "addr" and what it listens on.
func ready(log *slog.Logger, msg string, args ...any) {
	log.Log(context.Background(), levelReady, msg, args...)
}

// showReady is the ReplaceAttr of the command's handlers: it shows
// levelReady as INFO.
func showReady(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if l, ok := a.Value.Any().(slog.Level); ok && l == levelReady {
			a.Value = slog.StringValue(slog.LevelInfo.String())
		}
	}
	return a
}

// logFormat is the value of -log-format: "text" or "json".
type logFormat string

func (f *logFormat) String() string { return string(*f) }

func (f *logFormat) Set(s string) error {
	if s != "text" && s != "json" {
		return errors.New("want text or json")
	}
	*f = logFormat(s)
	return nil
}

// stallFlag adds -stall-timeout to fs: how long a session of a peer that
// does no flow control may hold up the other sessions on its link.
func stallFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("stall-timeout", 10*time.Second, "how long a session whose reader takes nothing may hold up the others "+
		"on its link (a peer without flow control: a full session stops the link being read) before it is cut and logged; negative: never")
}

// windowMemoryFlag adds -window-memory to fs, in MiB: what the
// flow-control windows of all the process's sessions may grow by together
// (DiscoverPoint.WindowMemory, ListenConfig.WindowMemory).
func windowMemoryFlag(fs *flag.FlagSet) *int64 {
	return fs.Int64("window-memory", rtcp.DefaultWindowMemory>>20, "`MiB` by which the flow-control windows of all sessions may grow together "+
		"(each starts at 256 KiB and grows, up to 256 MiB and half of this, over a long round trip): what readers that fall behind can make this process hold")
}

// transportFlag is a flag.Value for rtcp.Transport.
type transportFlag struct{ t rtcp.Transport }

func (f *transportFlag) String() string { return f.t.String() }

func (f *transportFlag) Set(s string) error {
	t, err := rtcp.ParseTransport(s)
	if err != nil {
		return errors.New("want json, yamux or tcp")
	}
	f.t = t
	return nil
}

// transportVar adds -transport to fs; usage says what it selects.
func transportVar(fs *flag.FlagSet, usage string) *rtcp.Transport {
	f := new(transportFlag)
	fs.Var(f, "transport", usage)
	return &f.t
}

// wrapError is an error with a message for people that still matches
// the error it explains with errors.Is and errors.As.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

func wrapf(err error, format string, args ...any) error {
	return &wrapError{fmt.Sprintf(format, args...), err}
}
