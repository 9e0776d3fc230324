package main

import (
	"context"
	"errors"
	"io"

	"rtcp/mihini"
)

func runMihiniDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mihini-device", "mihini-device -server HOST:PORT [-reconnect] [-stall-timeout DURATION] [-log-level LEVEL]", `
Run the device side of the Mihini agent's TCP Remote Connection (the
original's DeviceSideApp): dial the server side at HOST:PORT (rtcp
mihini-server, a DP's -mihini door, or the original server), send LISTEN,
and for each CONNECT connect to the address it names and carry the
session. DATA that comes before its CONNECT is held. When the link drops,
every session is closed; with -reconnect the device dials again with
backoff (the original does not), otherwise it exits with status 1. The
wire has no flow control: a service that reads slowly holds the server
back, and the link's other sessions wait with it, for at most
-stall-timeout if it reads nothing. It runs until SIGINT or SIGTERM.

Examples:

	rtcp mihini-device -server server.example.com:9100 -reconnect
	rtcp mihini-device -server 127.0.0.1:9100 -log-level debug`)
	server := fs.String("server", "", "`host:port` of the server side (required)")
	reconnect := fs.Bool("reconnect", false, "dial the server again, with backoff, when the link cannot be made or drops")
	stall := stallFlag(fs)
	logger := logFlags(fs, stderr)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := required(fs, "server"); err != nil {
		return err
	}
	log := logger()
	d := &mihini.Device{Server: *server, Reconnect: *reconnect, StallTimeout: *stall, Logger: log}
	ready(log, "rtcp mihini-device: serving", "server", *server)
	err := d.DialAndServe(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}
