package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"rtcp"
)

// The exit statuses of "rtcp connect -stdio" beyond 0 (the session ended
// cleanly), 1 (any other failure) and 2 (a usage error), so that a script
// or ssh's user can tell what happened. connect's -h lists them.
const (
	exitRefused     = 3 // the DP or the server refused the session
	exitUnreachable = 4 // no DP at -dp, or it did not complete the handshake
	exitCut         = 5 // the session was cut off before it ended
)

// An exitError is a failure with its own exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// carryStdio opens one session with dial and carries stdin to it and it
// to stdout. The end of stdin half-closes the session; the end of the
// session ends the call once what it sent is written to stdout, whether
// stdin has ended or not. The end of ctx ends the session and the call
// returns nil.
//
// A goroutine blocked reading stdin when the session ends is left
// behind: a read of a terminal or a pipe cannot be interrupted, and the
// process exits anyway.
func carryStdio(ctx context.Context, dial func(context.Context) (net.Conn, error), stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	c, err := dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rtcp.ErrRefused) {
			return &exitError{exitRefused, err}
		}
		return &exitError{exitUnreachable, err}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	up := make(chan error, 1)
	go func() { up <- sendStdin(c, stdin, log) }()
	down := make(chan error, 1)
	out := &recordWriter{w: stdout}
	go func() {
		_, err := io.Copy(out, c)
		down <- err
	}()

	select {
	case err = <-down:
	case err = <-up:
		if err == nil { // stdin ended and the session was half-closed
			err = <-down
			break
		}
		c.Close()
		<-down
	}
	switch {
	case ctx.Err() != nil:
		return nil
	case out.err != nil:
		return fmt.Errorf("stdout: %w", out.err)
	case err == nil:
		return nil
	}
	var se *stdinError
	if errors.As(err, &se) {
		return se
	}
	return &exitError{exitCut, fmt.Errorf("the session was cut off: %w", err)}
}

// sendStdin copies stdin to c and, at the end of stdin, half-closes c.
func sendStdin(c net.Conn, stdin io.Reader, log *slog.Logger) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &stdinError{err}
		}
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	err := cw.CloseWrite()
	if errors.Is(err, rtcp.ErrNoHalfClose) {
		log.Warn("stdin ended, but the server cannot be told so (it cannot half-close); the session stays open until the server ends it")
		return nil
	}
	return err
}

// A stdinError is a failure to read stdin: status 1, not a cut session.
type stdinError struct{ err error }

func (e *stdinError) Error() string { return "stdin: " + e.err.Error() }
func (e *stdinError) Unwrap() error { return e.err }

// recordWriter keeps the first error of w, so that a failed copy tells
// a failing stdout from a failing session.
type recordWriter struct {
	w   io.Writer
	err error
}

func (r *recordWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}
