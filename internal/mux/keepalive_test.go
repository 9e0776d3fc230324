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

// BenchmarkIdleReader reads a loopback TCP stream in 4 KiB reads (a Plan5
// reader's buffer), with and without an IdleReader: what keepalive costs.
func BenchmarkIdleReader(b *testing.B) {
	for _, idle := range []time.Duration{0, 30 * time.Second} {
		name := "off"
		if idle > 0 {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			ir := NewIdleReader(c)
			ir.SetIdleTimeout(idle)
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := io.ReadFull(ir, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c.Close()
			<-done
		})
	}
}
