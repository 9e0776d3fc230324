package bench

import (
	"context"
	"net"
	"sync"

	"rtcp"
)

// testLibrary is the rtcp command's Library (cmd/rtcp's benchLibrary),
// for the tests of the in-process rows: package bench itself does not
// import package rtcp.
func testLibrary(ctx context.Context, p LibraryPath) (func(context.Context) (net.Conn, error), func(), error) {
	t, err := rtcp.ParseTransport(p.Transport)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	dp := &rtcp.DiscoverPoint{MaxSessionsPerServer: p.MaxSessions}
	var wg sync.WaitGroup
	wg.Go(func() { dp.Serve(ln) })
	stopDP := func() {
		dp.Close()
		ln.Close()
		wg.Wait()
	}
	via, err := p.Via(ln.Addr().String())
	if err != nil {
		stopDP()
		return nil, nil, err
	}
	lc := rtcp.ListenConfig{Transport: t, PoolSize: p.Pool}
	l, err := lc.Listen(ctx, via, "bench")
	if err != nil {
		stopDP()
		return nil, nil, err
	}
	wg.Go(func() { p.Serve(l) })
	d := rtcp.Dialer{Transport: t}
	addr := ln.Addr().String()
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, addr, "bench") }
	return dial, func() { l.Close(); stopDP() }, nil
}
