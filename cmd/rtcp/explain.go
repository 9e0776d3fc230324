package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"rtcp"
	"rtcp/protocol/plan5"
)

// explainDP returns err, an error of Listen or Dial toward the DP at dp,
// as one line that says what happened and what to do, in the terms of
// the command line. what is the object of a refusal: `name "pi-7"` for
// a server, `the session to "pi-7"` for a client; tlsOn says whether
// TLS was asked for. The result still matches what err matches.
func explainDP(err error, dp, what string, tlsOn bool) error {
	var (
		re   *rtcp.RefusedError
		ne   *rtcp.NameError
		rhe  tls.RecordHeaderError
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		dial *net.OpError
	)
	switch {
	case errors.Is(err, rtcp.ErrNameTaken):
		return wrapf(err, "DP %s refused %s: already served by another server; choose another -name, or stop the other server", dp, what)
	case errors.As(err, &ne):
		// This side's own check (a name the command line did not check).
		return wrapf(err, "name %q: %s", ne.Name, ne.Reason)
	case errors.Is(err, rtcp.ErrKeyRequired):
		return wrapf(err, "DP %s refused %s: unauthorized: it admits only peers with a key, and this side gave none: give one with -token-file FILE (or $%s)", dp, what, tokenEnv)
	case errors.As(err, &re):
		return wrapf(err, "DP %s refused %s: %s", dp, what, strings.TrimPrefix(re.Reason, "rtcp: "))
	case errors.As(err, &rhe):
		return wrapf(err, "DP %s does not speak TLS (it answered in plain text): leave out -tls and the other -tls flags", dp)
	case errors.As(err, &uae):
		return wrapf(err, "the certificate of DP %s is signed by a CA this side does not trust: give that CA with -tls-ca FILE", dp)
	case errors.As(err, &cve):
		return wrapf(err, "the certificate of DP %s is not valid for it: %v (check -dp and -tls-ca)", dp, cve.Err)
	case errors.Is(err, plan5.ErrBadType), errors.Is(err, plan5.ErrBadJSON), errors.Is(err, plan5.ErrLineTooLong):
		return wrapf(err, "%s does not speak rtcp: give -dp the address of an rtcp DP", dp)
	case isDial(err, &dial):
		return wrapf(err, "cannot reach DP %s: %v", dp, dial.Err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		if tlsOn {
			return wrapf(err, "DP %s closed the connection during the handshake", dp)
		}
		return wrapf(err, "DP %s closed the connection during the handshake: it may require TLS (-tls, or -tls-ca FILE for a private CA)", dp)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Net == "rtcp" {
		return wrapf(err, "cannot reach DP %s: %v", dp, op.Err) // op repeats the name and the DP
	}
	return wrapf(err, "cannot reach DP %s: %v", dp, err)
}

// isDial reports whether err is the failure to open a connection, and
// sets *op to it.
func isDial(err error, op **net.OpError) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if o, ok := e.(*net.OpError); ok && o.Op == "dial" && o.Net != "rtcp" {
			*op = o
			return true
		}
	}
	return false
}

// checkDP returns a usageError unless dp is what -dp takes: host:port, a
// comma-separated list of them, or a ws:// or wss:// URL.
func checkDP(fs *flag.FlagSet, dp string) error {
	if u, err := url.Parse(dp); err == nil && u.Scheme != "" && u.Host != "" {
		switch u.Scheme {
		case "ws", "wss", "http", "https":
			return nil
		}
		return usageErrorf(fs, "-dp %q: want host:port or a ws:// or wss:// URL, not %s://", dp, u.Scheme)
	}
	for _, a := range strings.Split(dp, ",") {
		if !isHostPort(a) {
			return usageErrorf(fs, "-dp %q: want host:port, such as dp.example.com:9000 (or a list of them, or ws://host:port/rtcp)", dp)
		}
	}
	return nil
}

// checkHostPort returns a usageError unless the value of -flag is
// host:port.
func checkHostPort(fs *flag.FlagSet, flag, value, example string) error {
	if !isHostPort(value) {
		return usageErrorf(fs, "-%s %q: want host:port, such as %s", flag, value, example)
	}
	return nil
}

// isHostPort reports whether s is host:port with a port number or a
// service name that this machine knows.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" || strings.ContainsAny(host, " /") {
		return false
	}
	p, err := net.LookupPort("tcp", port)
	return err == nil && p != 0
}

// checkName returns a usageError unless name, the value of -flag, is a
// name a server may register (an rtcp.ValidName), or, with door, one a
// client may ask for (an rtcp.ValidDoorName: a seed door's cccp:SERIAL
// too).
func checkName(fs *flag.FlagSet, flag, name string, door bool) error {
	if err := validName(name, door); err != nil {
		return usageErrorf(fs, "-%s %s", flag, err)
	}
	return nil
}

// validName is rtcp.ValidName, or with door rtcp.ValidDoorName, with an
// error in the terms of the command line: the name, and what is wrong
// with it.
func validName(name string, door bool) error {
	err := rtcp.ValidName(name)
	if door {
		err = rtcp.ValidDoorName(name)
	}
	var ne *rtcp.NameError
	if errors.As(err, &ne) {
		return fmt.Errorf("%q: %s", name, ne.Reason)
	}
	return err
}
