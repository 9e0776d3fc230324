package mux

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// idleLink is a link whose b side reads through an IdleReader.
func idleLink(t *testing.T, cfgA, cfgB Config, idle time.Duration) (l *link, ir *IdleReader) {
	t.Helper()
	ca, cb := net.Pipe()
	ir = NewIdleReader(cb)
	ir.SetIdleTimeout(idle)
	bw := bufio.NewWriter(cb)
	frB := &jsonFramer{dec: json.NewDecoder(ir), bw: bw, enc: json.NewEncoder(bw)}
	l = &link{ca: ca, cb: cb}
	l.a = New(ca, newJSONFramer(ca), cfgA)
	l.b = New(cb, frB, cfgB)
	return l, ir
}

func TestKeepAliveKeepsQuietLinkUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := idleLink(t, Config{KeepAlive: time.Second}, Config{}, 2*time.Second)
		defer l.close()
		fromA, atB := l.open(t)
		time.Sleep(time.Hour)
		synctest.Wait()
		if err := l.b.Err(); err != nil {
			t.Fatalf("a quiet link with heartbeats ended: %v", err)
		}
		fromA.Write([]byte("still here"))
		buf := make([]byte, 10)
		if _, err := io.ReadFull(atB, buf); err != nil {
			t.Fatalf("after an hour of heartbeats: %v", err)
		}
	})
}

func TestIdleReaderNoticesSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// a sends no heartbeats: b must give the link up at 2 s exactly.
		l, _ := idleLink(t, Config{}, Config{}, 2*time.Second)
		defer l.close()
		_, atB := l.open(t)
		start := time.Now()
		_, err := atB.Read(make([]byte, 1))
		elapsed := time.Since(start)
		var se *SilentError
		if !errors.As(err, &se) || errors.Is(err, io.EOF) {
			t.Fatalf("read on a silent link: %v, want a SilentError and not io.EOF", err)
		}
		if elapsed > 2*time.Second || elapsed < 2*time.Second*15/16 {
			t.Fatalf("silence noticed after %v, want within (1.875 s, 2 s]", elapsed)
		}
		<-l.b.Done()
		if !errors.As(l.b.Err(), &se) {
			t.Fatalf("session error %v, want a SilentError", l.b.Err())
		}
	})
}

func TestIdleReaderCountsBytesNotFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, cb := net.Pipe()
		defer ca.Close()
		ir := NewIdleReader(cb)
		ir.SetIdleTimeout(2 * time.Second)
		b := New(cb, &jsonFramer{dec: json.NewDecoder(ir), bw: bufio.NewWriter(cb)}, Config{})
		defer b.Close()
		go io.Copy(io.Discard, ca)
		// One frame that takes 20 s to arrive, a byte a second: slow, not
		// silent.
		frame, _ := json.Marshal(&Frame{Kind: KindKeepAlive})
		for _, c := range append(frame, '\n') {
			ca.Write([]byte{c})
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if err := b.Err(); err != nil {
			t.Fatalf("a slow frame ended the link: %v", err)
		}
	})
}

func TestSetKeepAliveLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := idleLink(t, Config{}, Config{}, 2*time.Second)
		defer l.close()
		l.a.SetKeepAlive(time.Second)
		time.Sleep(time.Minute)
		synctest.Wait()
		if err := l.b.Err(); err != nil {
			t.Fatalf("heartbeats started with SetKeepAlive did not keep the link up: %v", err)
		}
		l.a.SetKeepAlive(0)
		start := time.Now()
		<-l.b.Done()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("link ended %v after the heartbeats stopped, want <= 2 s", d)
		}
	})
}
