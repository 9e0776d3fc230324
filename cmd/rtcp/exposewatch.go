package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"rtcp"
)

// exitNameLost is rtcp expose's exit status when another server has held
// its name for -lost-name-timeout: a supervisor (systemd's
// RestartPreventExitStatus, a script) can tell it from a crash.
const exitNameLost = 6

// defaultLostNameTimeout is how long expose goes on, by default, after
// another server took its name.
const defaultLostNameTimeout = 5 * time.Minute

// errNameLost is the cause of the end of expose's context when its name
// was held by another server for too long.
var errNameLost = errors.New("name lost")

// nameWatch follows an exposed Listener's events, and ends its context
// when another server has held the name, at every DP that refused it,
// for the timeout (0: never).
type nameWatch struct {
	name    string
	timeout time.Duration
	cancel  context.CancelCauseFunc
	log     *slog.Logger

	mu    sync.Mutex // guards lost and timer
	lost  map[string]bool
	timer *time.Timer // runs while lost is not empty
}

// watchName returns a context that ends with ctx, or with errNameLost as
// its cause, and the watch whose onEvent a ListenConfig calls.
func watchName(ctx context.Context, name string, timeout time.Duration, log *slog.Logger) (context.Context, *nameWatch) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, &nameWatch{name: name, timeout: timeout, cancel: cancel, log: log, lost: make(map[string]bool)}
}

func (w *nameWatch) onEvent(e rtcp.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e.Kind {
	case rtcp.EventNameLost:
		w.lost[e.DP] = true
		if w.timer == nil && w.timeout > 0 {
			w.log.Error("rtcp expose: name lost; exiting unless it is taken back in time", "name", w.name, "dp", e.DP,
				"lost_name_timeout", w.timeout, "exit_status", exitNameLost)
			w.timer = time.AfterFunc(w.timeout, func() { w.cancel(errNameLost) })
		}
	case rtcp.EventRegistered:
		delete(w.lost, e.DP)
		if len(w.lost) == 0 && w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
	}
}

// stop releases the watch's timer and context.
func (w *nameWatch) stop() {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.cancel(nil)
}

// result turns what serving under ctx (from watchName) returned into
// expose's error: the name lost, with its exit status, if that ended it.
func (w *nameWatch) result(ctx context.Context, err error) error {
	if context.Cause(ctx) != errNameLost {
		return err
	}
	return &exitError{exitNameLost, fmt.Errorf("another server has held the name %q for -lost-name-timeout %v; clients reach it, not this one: stop it or choose another name", w.name, w.timeout)}
}

// ignoreHangup makes SIGHUP, which would end expose, a log line instead:
// expose reads its files (-token-file, the TLS files) only at start.
// It returns a function that stops it.
func ignoreHangup(log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ch:
				log.Warn("rtcp expose: SIGHUP ignored: expose reads -token-file and the TLS files only at start; restart it to use new ones")
			case <-done:
				return
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}
