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
	fs := newFlagSet("c8y-agent", "c8y-agent -url URL [-user TENANT/USER -password-file FILE | -token-file FILE] -ops FILE|- [-status smartrest|text] [-log-level LEVEL]", `
Run a Cumulocity remote access device agent. It reads
c8y_RemoteAccessConnect operations from FILE (or standard input with
-ops -): the operation's JSON, which may span several lines, or the
SmartREST line 530,<externalId>,<host>,<port>,<key>. For each it dials
host:port and the WebSocket URL/service/remoteaccess/device/<key> at the
same time and copies bytes between them until either ends. URL is the
tenant's (https://t123.cumulocity.com) or an rtcp DP's (-c8y-listen).

Each status change is a line on standard output, in SmartREST by default:
an operation given as JSON with an "id" is answered by that ID, as the
Cumulocity C reference agent does (its SmartREST 1.0 templates, over
HTTP; on MQTT s/us these numbers raise alarms):

	303,<id>,EXECUTING
	303,<id>,SUCCESSFUL
	304,<id>,"<reason>"

and any other (a 530 line) with the MQTT static templates, for s/us:

	501,c8y_RemoteAccessConnect
	503,c8y_RemoteAccessConnect
	502,c8y_RemoteAccessConnect,"<reason>"

A bad operation is answered at once with EXECUTING and FAILED; input that
is no operation at all is logged and answered with nothing. With -status
text the lines are readable instead (they show the connection key, a
credential until its tunnel is open):

	EXECUTING <key>
	SUCCESSFUL <key>
	FAILED <key> <reason>

It runs until the operations end and every tunnel has closed, or until
SIGINT or SIGTERM.

Examples:

	rtcp c8y-agent -url https://t123.cumulocity.com -user t123/device -password-file pw -ops -
	rtcp c8y-agent -url ws://dp.example.com:8080 -ops ops.txt -status text`)
	u := fs.String("url", "", "base `URL` of the tenant or DP: https://..., wss://..., http://... or ws://... (required)")
	user := fs.String("user", "", "`tenant/user` for Basic authorization (with -password-file)")
	pwFile := fs.String("password-file", "", "`file` holding the password of -user")
	tokenFile := fs.String("token-file", "", "`file` holding a token for Bearer authorization")
	ops := fs.String("ops", "", "`file` to read operations from (JSON or SmartREST 530 lines); - is standard input (required)")
	timeout := fs.Duration("connect-timeout", 30*time.Second, "how long setting up a tunnel may take")
	status := fs.String("status", "smartrest", "`form` of the status lines: smartrest (for Cumulocity) or text (readable)")
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
	switch *status {
	case "smartrest":
		a.StatusFormat = c8y.StatusSmartREST
	case "text":
		a.StatusFormat = c8y.StatusText
	default:
		return usageErrorf(fs, "-status is smartrest or text, not %q", *status)
	}
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
