package main

import (
	"context"
	"errors"
	"io"

	"rtcp/cccp"
	wire "rtcp/protocol/cccp"
)

func runCCCPDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cccp-device", "cccp-device -proxy HOST:PORT -serial SERIAL -to HOST:PORT [-log-level LEVEL]", `
Run a CCCP device (the Thing): dial the proxy's device port, register
with SERIAL, and carry the connection to the local TCP service HOST:PORT.
When either side ends it connects again, with backoff. Clients reach the
service through the proxy port that GET /on?serial=SERIAL gives. It runs
until SIGINT or SIGTERM.

Examples:

	rtcp cccp-device -proxy dp.example.com:7000 -serial ABC123 -to 127.0.0.1:22
	rtcp cccp-device -proxy 127.0.0.1:7000 -serial test-1 -to 127.0.0.1:8080 -log-level debug`)
	proxy := fs.String("proxy", "", "`host:port` of the proxy's device port (rtcp dp -cccp-devices) (required)")
	serial := fs.String("serial", "", "the device's `serial` (required)")
	to := fs.String("to", "", "`host:port` of the local service clients reach (required)")
	logger := logFlags(fs, stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "proxy", "serial", "to"); err != nil {
		return err
	}
	if err := wire.CheckSerial(*serial); err != nil {
		return usageErrorf(fs, "-serial: %v", err)
	}
	log := logger()
	d := &cccp.Device{Proxy: *proxy, Serial: *serial, To: *to, Logger: log}
	ready(log, "rtcp cccp-device: serving", "to", *to, "serial", *serial, "proxy", *proxy)
	err := d.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
