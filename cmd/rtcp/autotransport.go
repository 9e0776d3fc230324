package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"log/slog"
	"net"

	"rtcp"
)

// fastestFirst is what expose asks the DP for when -transport is not
// given: the fastest transport first (docs/performance.md: tcp splices
// each session's own connection, yamux carries raw bytes on one link,
// json wraps every byte in a Data message). Every DP, a plain Plan5 one
// too, speaks json.
var fastestFirst = []rtcp.Transport{rtcp.TransportTCP, rtcp.TransportYamux, rtcp.TransportJSON}

// transportsToTry returns the transports expose tries in turn: the one
// -transport gives, or, without it, fastestFirst.
func transportsToTry(fs *flag.FlagSet, t rtcp.Transport) []rtcp.Transport {
	if isSet(fs, "transport") {
		return []rtcp.Transport{t}
	}
	return fastestFirst
}

// clientTransport is connect's -transport: the one given, or else the raw
// client leg (TransportTCP), which the Dialer asks for and a DP that does
// not offer it answers with JSON, so that it costs nothing to ask.
func clientTransport(fs *flag.FlagSet, t rtcp.Transport) rtcp.Transport {
	if isSet(fs, "transport") {
		return t
	}
	return rtcp.TransportTCP
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// listenFastest registers name at the DP dp with lc and the first of ts
// that the DP offers (rtcp.ErrTransportNotOffered moves on to the next),
// and returns the listener and its transport. Every attempt is made as
// one owner, so that a plain DP, which takes a link that asked for a
// transport as a JSON link, gives the name to the next attempt rather
// than taking it for another server's.
func listenFastest(ctx context.Context, lc rtcp.ListenConfig, ts []rtcp.Transport, dp, name string, log *slog.Logger) (net.Listener, rtcp.Transport, error) {
	if lc.Owner == "" && len(ts) > 1 {
		var b [8]byte
		rand.Read(b[:])
		lc.Owner = hex.EncodeToString(b[:])
	}
	var err error
	for i, t := range ts {
		lc.Transport = t
		var l net.Listener
		if l, err = lc.Listen(ctx, dp, name); err == nil || !errors.Is(err, rtcp.ErrTransportNotOffered) {
			return l, t, err
		}
		if i+1 < len(ts) {
			log.Info("rtcp expose: the DP does not offer this transport; trying the next", "name", name, "transport", t.String(), "next", ts[i+1].String())
		}
	}
	return nil, lc.Transport, err
}
