package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"rtcp/c8y"
)

func runC8yAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("c8y-agent", "c8y-agent -url URL [-user TENANT/USER -password-file FILE | -token-file FILE] -ops FILE|- [-log-level LEVEL]", `
Run a Cumulocity remote access device agent. It reads
c8y_RemoteAccessConnect operations, one per line, from FILE (or standard
input with -ops -): the operation's JSON, or the SmartREST line
530,<externalId>,<host>,<port>,<key>. For each it dials host:port and the
WebSocket URL/service/remoteaccess/device/<key> at the same time and
copies bytes between them until either ends. URL is the tenant's
(https://t123.cumulocity.com) or an rtcp DP's (-c8y-listen). Each status
change is a line on standard output:

	EXECUTING <key>
	SUCCESSFUL <key>
	FAILED <key> <reason>

It runs until the operations end and every tunnel has closed, or until
SIGINT or SIGTERM.`)
	u := fs.String("url", "", "base `URL` of the tenant or DP: https://..., wss://..., http://... or ws://... (required)")
	user := fs.String("user", "", "`tenant/user` for Basic authorization (with -password-file)")
	pwFile := fs.String("password-file", "", "`file` holding the password of -user")
	tokenFile := fs.String("token-file", "", "`file` holding a token for Bearer authorization")
	ops := fs.String("ops", "", "`file` to read operations from, one per line; - is standard input (required)")
	timeout := fs.Duration("connect-timeout", 30*time.Second, "how long setting up a tunnel may take")
	logger := logFlags(fs, stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "url", "ops"); err != nil {
		return err
	}
	if (*user == "") != (*pwFile == "") {
		return usageErrorf(fs, "give -user and -password-file together")
	}
	if *user != "" && *tokenFile != "" {
		return usageErrorf(fs, "give either -user and -password-file or -token-file, not both")
	}
	a := &c8y.Agent{URL: *u, User: *user, ConnectTimeout: *timeout, Status: stdout, Logger: logger()}
	var err error
	if *pwFile != "" {
		if a.Password, err = readToken("password-file", *pwFile); err != nil {
			return err
		}
	}
	if *tokenFile != "" {
		if a.Token, err = readToken("token-file", *tokenFile); err != nil {
			return err
		}
	}
	var r io.Reader = os.Stdin
	if *ops != "-" {
		f, err := os.Open(*ops)
		if err != nil {
			return fmt.Errorf("-ops: %w", err)
		}
		defer f.Close()
		r = f
	}
	if err := a.Serve(ctx, r); err != nil {
		return fmt.Errorf("reading operations: %w", err)
	}
	return nil
}
