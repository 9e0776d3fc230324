package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"rtcp"
	"rtcp/internal/backoff"
)

// exposeFile is the -config file of rtcp expose: the services one process
// exposes at one DP. docs/cli.md has an example.
type exposeFile struct {
	Services []serviceConfig `json:"services"`
}

// serviceConfig is one service of an exposeFile. Name and To are
// required; the others, when given, replace the command line's for this
// service.
type serviceConfig struct {
	Name      string `json:"name"`       // the name clients reach it by
	To        string `json:"to"`         // host:port of the local TCP service
	Transport string `json:"transport"`  // json, yamux or tcp; empty: -transport, or the fastest the DP offers
	Pool      int    `json:"pool"`       // links to keep; 0: -pool
	TokenFile string `json:"token_file"` // the token this name is registered with; relative to the file's directory
}

// checkServiceFlags checks the flags that say what expose serves: -name
// and -to, or -config (which -fail-fast does not go with: each service
// is retried whatever fails).
func checkServiceFlags(fs *flag.FlagSet, config string) error {
	if config == "" {
		if err := required(fs, "dp", "name", "to"); err != nil {
			return err
		}
		return checkHostPort(fs, "to", fs.Lookup("to").Value.String(), "127.0.0.1:22")
	}
	for _, name := range []string{"name", "to"} {
		if isSet(fs, name) {
			return usageErrorf(fs, "-config and -%s exclude each other: the file gives each service its name and address", name)
		}
	}
	if isSet(fs, "fail-fast") {
		return usageErrorf(fs, "-config and -fail-fast exclude each other: with -config, each service is started again whatever fails")
	}
	return required(fs, "dp")
}

// A service is a serviceConfig made ready to run.
type service struct {
	name, to   string
	transports []rtcp.Transport
	lc         rtcp.ListenConfig
}

// parseExposeFile parses the -config file b of expose. Unknown fields are
// an error: a misspelt "token_file" must not register a name without it.
func parseExposeFile(b []byte) (*exposeFile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f exposeFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if len(f.Services) == 0 {
		return nil, errors.New(`no services: want {"services": [{"name": "NAME", "to": "HOST:PORT"}, ...]}`)
	}
	seen := make(map[string]bool)
	for i, s := range f.Services {
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("service %d: no name", i+1)
		case validName(s.Name, false) != nil:
			return nil, fmt.Errorf("service %d: %w", i+1, validName(s.Name, false))
		case seen[s.Name]:
			return nil, fmt.Errorf("service %q: given twice", s.Name)
		case !isHostPort(s.To):
			return nil, fmt.Errorf("service %q: to %q: want host:port, such as 127.0.0.1:22", s.Name, s.To)
		case s.Pool < 0:
			return nil, fmt.Errorf("service %q: pool %d: want at least 1, or 0 for -pool", s.Name, s.Pool)
		}
		if s.Transport != "" {
			if _, err := rtcp.ParseTransport(s.Transport); err != nil {
				return nil, fmt.Errorf("service %q: transport %q: want json, yamux or tcp", s.Name, s.Transport)
			}
		}
		seen[s.Name] = true
	}
	return &f, nil
}

// loadServices reads the -config file path and makes its services from
// lc and transports, the command line's.
func loadServices(path string, lc rtcp.ListenConfig, transports []rtcp.Transport, log *slog.Logger) ([]service, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	f, err := parseExposeFile(b)
	if err != nil {
		return nil, fmt.Errorf("-config %s: %w", path, err)
	}
	var svcs []service
	for _, c := range f.Services {
		s := service{name: c.Name, to: c.To, transports: transports, lc: lc}
		if c.Transport != "" {
			t, _ := rtcp.ParseTransport(c.Transport) // checked by parseExposeFile
			s.transports = []rtcp.Transport{t}
		}
		if c.Pool > 0 {
			s.lc.PoolSize = c.Pool
		}
		if c.TokenFile != "" {
			p := c.TokenFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			warnIfShared(p, "-config token_file", log)
			tok, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("-config %s: service %q: %w", path, c.Name, err)
			}
			if s.lc.Credential, err = rtcp.ParseCredential(string(tok)); err != nil {
				return nil, fmt.Errorf("-config %s: service %q: token_file %s: %w", path, c.Name, p, err)
			}
		}
		svcs = append(svcs, s)
	}
	return svcs, nil
}

// exposeServices runs each service of the -config file path until ctx
// ends: it registers the service's name at the DP dp (dpAddr as lc
// dials it) and carries its sessions to its local address. A service
// that fails (the DP refuses its name, its link to the DP is lost for
// good) is logged and started again after a backoff that grows to
// maxBackoff, and the others go on. Only a bad file ends it.
func exposeServices(ctx context.Context, path string, lc rtcp.ListenConfig, dp, dpAddr string, transports []rtcp.Transport,
	maxBackoff time.Duration, tlsOn bool, log *slog.Logger) error {
	lc.WaitForDP = true
	svcs, err := loadServices(path, lc, transports, log)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range svcs {
		wg.Go(func() { s.run(ctx, dp, dpAddr, maxBackoff, tlsOn, log.With("name", s.name)) })
	}
	wg.Wait()
	return nil
}

// run serves s until ctx ends, starting it again each time it fails.
func (s *service) run(ctx context.Context, dp, dpAddr string, maxBackoff time.Duration, tlsOn bool, log *slog.Logger) {
	d := net.Dialer{Timeout: 10 * time.Second}
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", s.to) }
	for failures := 1; ; failures++ {
		l, t, err := listenFastest(ctx, s.lc, s.transports, dpAddr, s.name, log)
		if ctx.Err() != nil {
			if l != nil {
				l.Close()
			}
			return
		}
		if err == nil {
			failures = 0
			ready(log, "rtcp expose: serving", "addr", l.Addr().String(), "to", s.to, "transport", t.String())
			err = forward(ctx, l, dial, log.With("to", s.to))
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("the listener closed")
			}
		} else {
			err = listenError(err, dp, s.name, t, tlsOn)
		}
		wait := backoff.Delay(max(failures, 1), 100*time.Millisecond, maxBackoff)
		log.Error("rtcp expose: service failed; starting it again, the others go on", "err", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}
