package wsconn_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"rtcp/internal/memnet"
	"rtcp/wsconn"
)

// TestAbortEndsAtOnce: Abort ends a WebSocket at once, even one whose
// peer reads nothing, and so neither takes a close frame nor answers it
// (the library's close handshake waits 5 s for each); and the peer reads
// an error, not a clean end. In a synctest bubble over in-memory
// connections, where a write waits until the peer reads.
func TestAbortEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memnet.New("dp")
		accepted := make(chan net.Conn, 1)
		read := make(chan error, 1)
		release := make(chan struct{})
		srv := &http.Server{Handler: wsconn.Handler("", func(c net.Conn) {
			defer c.Close()
			accepted <- c
			<-release // reads nothing until then
			_, err := io.ReadAll(c)
			read <- err
		})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		tr := &http.Transport{DialContext: l.DialContext}
		defer tr.CloseIdleConnections()
		d := &wsconn.Dialer{URL: "ws://dp/rtcp", HTTPClient: &http.Client{Transport: tr}}
		c, err := d.DialURL(context.Background(), d.URL)
		if err != nil {
			t.Fatal(err)
		}
		<-accepted

		start := time.Now()
		c.(interface{ Abort(error) }).Abort(errors.New("the other side failed"))
		if took := time.Since(start); took > 0 {
			t.Errorf("Abort took %v, want it at once", took)
		}
		close(release)
		if err := <-read; err == nil {
			t.Error("the peer of an aborted WebSocket read a clean end")
		}
		c.Close()
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
}
