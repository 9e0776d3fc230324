package main

import (
	"context"
	"io"
	"time"

	"rtcp"
)

func runDP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dp", "dp -listen ADDR [-port NAME=ADDR]... [-grace DURATION] [-tls-cert FILE -tls-key FILE [-tls-ca FILE]] [-config FILE] [-token-file FILE] [-etcd URLS -advertise ADDR [-etcd-ttl DURATION] [-etcd-tls-ca FILE] [-etcd-tls-cert FILE -etcd-tls-key FILE] [-etcd-user NAME -etcd-password-file FILE] [-cluster-token-file FILE]] [-http ADDR] [-https ADDR] [-domain DOMAIN] [-metrics ADDR] [-admin ADDR [-admin-token-file FILE]] [-keepalive DURATION] [-stall-timeout DURATION] [-window-memory MiB] [-max-... N] [-log-level LEVEL]", `
Run a discover point (DP): indirect servers (rtcp expose, rtcp.Listen)
register their names with it, and indirect clients (rtcp connect,
rtcp.Dial) reach them by name through it. It runs until SIGINT or
SIGTERM, then stops accepting, lets open sessions finish for the grace
period, and cuts those still open. Each -port makes the DP accept plain
TCP on ADDR and carry every connection to the server NAME (port mode),
for clients that cannot run rtcp: ssh, psql, a SCADA system. -http and
-https are the doors for browsers: http://NAME.DOMAIN/, and TLS for
NAME.DOMAIN, reach the server NAME (-domain). With -etcd, the DP joins
the cluster of DPs that share that etcd: a name has one owner across
all of them, and a client may reach any DP for any name. Peers that do
no flow control (plain Plan5 servers and clients, Mihini devices) are
held back by TCP when a reader falls behind; a link's other sessions
wait meanwhile, for at most -stall-timeout if it reads nothing. Every
door (-listen, -port, -http, -https, -mihini, the seed doors, -metrics,
-admin) takes its connections from one budget (-max-conns), in which
each has a part of its own, so that a flood at one door cannot shut the
others.

Examples:

	rtcp dp -listen :9000
	rtcp dp -listen :9000 -tls-cert dp.crt -tls-key dp.key -config /etc/rtcp/dp.json -metrics 127.0.0.1:9100
	rtcp dp -listen :9000 -port pi-7=127.0.0.1:2222`)
	listen := fs.String("listen", "", "TCP `address` to accept servers and clients on, e.g. :9000 (required)")
	var ports portFlag
	fs.Var(&ports, "port", "`NAME=ADDR`: carry plain TCP connections on ADDR to the server NAME (repeatable)")
	grace := fs.Duration("grace", 10*time.Second, "on SIGINT or SIGTERM, how long open sessions may go on")
	noDirect := fs.Bool("no-direct", false, "never broker direct sessions: a client and a server that both ask for one (-direct) stay on this DP's relay (docs/direct.md)")
	seeds := addSeedFlags(fs)
	cluster := addClusterFlags(fs)
	hard := addHardeningFlags(fs)
	admin := addAdminFlags(fs)
	web := addWebFlags(fs)
	var mihinis mihiniFlag
	fs.Var(&mihinis, "mihini", "`NAME=ADDR=SERVICE_HOST:PORT`: Mihini devices that dial ADDR become the server NAME, "+
		"and each session to NAME is a CONNECT to SERVICE_HOST:PORT behind the device (repeatable)")
	mihiniKey := fs.String("mihini-key", "", "`key` of the -config policy that the devices of every -mihini door register as; "+
		"a LISTEN for a name the policy gives to another key is refused and replaces nothing; empty: anonymous, "+
		"admitted only if the policy allows anonymous servers, and only for names no rule gives to owners")
	stall := stallFlag(fs)
	windowMemory := windowMemoryFlag(fs)
	logger := logFlags(fs, stderr)
	sec := securityFlags(fs, true)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *windowMemory < 1 {
		return usageErrorf(fs, "-window-memory must be at least 1 (MiB)")
	}
	if err := required(fs, "listen"); err != nil {
		return err
	}
	if err := seeds.check(fs); err != nil {
		return err
	}
	if err := cluster.check(fs); err != nil {
		return err
	}
	if err := hard.check(fs); err != nil {
		return err
	}
	if err := admin.check(fs); err != nil {
		return err
	}
	if err := web.check(fs); err != nil {
		return err
	}
	log := logger()
	tlsCfg, err := sec.tlsConfig(fs, log)
	if err != nil {
		return err
	}
	pol, err := sec.policy(log)
	if err != nil {
		return err
	}
	policyKeys := [][2]string{{"c8y-server-key", *seeds.c8yServerKey}, {"cccp-key", *seeds.cccpKey}, {"mihini-key", *mihiniKey}}
	for _, k := range policyKeys {
		if err := policyKey(fs, k[0], k[1], pol); err != nil {
			return err
		}
	}
	cred, err := sec.credential()
	if err != nil {
		return err
	}
	member, err := cluster.join(ctx, tlsCfg, pol, cred, log)
	if err != nil {
		return err
	}
	defer member.leave()

	doors := hard.doors(seeds.proxyPorts(), log)
	ln, err := doors.listen("listen", *listen, 0)
	if err != nil {
		return err
	}
	portLns, err := listenPorts(ports.ports, doors)
	if err != nil {
		ln.Close()
		return err
	}
	dp := &rtcp.DiscoverPoint{Logger: log, TLSConfig: tlsCfg, Policy: pol, StallTimeout: *stall, WindowMemory: *windowMemory << 20, NoDirect: *noDirect}
	member.configure(dp)
	hard.configure(dp)
	admin.configure(dp)
	defer reloadOnHangup(&policyReloader{sec: sec, keys: policyKeys, member: member, dp: dp, log: log}, log)()
	waitPorts := servePorts(dp, ports.ports, portLns, log)
	defer waitPorts()
	stopSeeds, err := seeds.start(dp, doors)
	if err != nil {
		ln.Close()
		dp.Close()
		return err
	}
	defer stopSeeds()
	stopMihini, err := startMihini(dp, mihinis.doors, *mihiniKey, doors, *stall, log)
	if err != nil {
		ln.Close()
		dp.Close()
		return err
	}
	defer stopMihini()
	metrics := dpMetricsHandler(dp, doors)
	stopMetrics, err := hard.serveMetrics(metrics, doors)
	if err != nil {
		ln.Close()
		dp.Close()
		return err
	}
	defer stopMetrics()
	stopAdmin, err := admin.serve(dp, metrics, doors, log)
	if err != nil {
		ln.Close()
		dp.Close()
		return err
	}
	defer stopAdmin()
	webDoors, err := web.start(dp, doors, log)
	if err != nil {
		ln.Close()
		dp.Close()
		return err
	}
	defer webDoors.stop()
	served := make(chan error, 1)
	go func() { served <- dp.Serve(ln) }()
	warnOpen(pol, log)
	ready(log, "rtcp dp: listening", "addr", ln.Addr().String())

	select {
	case err := <-served:
		dp.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("rtcp dp: shutting down", "grace", *grace)
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	webDone := make(chan struct{})
	go func() { defer close(webDone); webDoors.shutdown(sctx) }() // its idle sessions end
	if err := dp.Shutdown(sctx); err != nil {
		log.Warn("rtcp dp: grace period over; cut the sessions still open")
	}
	<-webDone
	<-served
	log.Info("rtcp dp: stopped")
	return nil
}
