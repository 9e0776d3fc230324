package relay

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"rtcp/internal/flowtest"
)

// dropScanner drops every byte before a '|', passes the '|' and all after
// it as they are (plain), and fails the end if none came.
type dropScanner struct{ plain bool }

func (s *dropScanner) Scan(p []byte) (int, error) {
	if i := bytes.IndexByte(p, '|'); i >= 0 {
		s.plain = true
		copy(p, p[i:]) // what is written on is the chunk's front
		return len(p) - i, nil
	}
	return 0, nil
}

func (s *dropScanner) Plain() bool { return s.plain }

func (s *dropScanner) End() error {
	if !s.plain {
		return errors.New("no '|'")
	}
	return nil
}

// JoinScanned passes on what its Scanner says, then relays the rest as
// it is (between TCP connections, with copyTCP's splice); the other
// direction, unscanned, as Join does.
func TestJoinScanned(t *testing.T) {
	a, aJoin := flowtest.TCPPair(t)
	bJoin, b := flowtest.TCPPair(t)
	bulk := bytes.Repeat([]byte("0123456789"), 1<<17)
	done := make(chan error, 1)
	go func() {
		_, err := JoinScanned(aJoin, bJoin, nil, &dropScanner{}, nil)
		done <- err
	}()
	go func() {
		a.Write([]byte("dropped"))
		a.Write([]byte("also dropped|kept"))
		a.Write(bulk)
		a.CloseWrite()
	}()
	go func() {
		b.Write([]byte("back"))
		b.CloseWrite()
	}()
	got, err := io.ReadAll(b)
	if want := append([]byte("|kept"), bulk...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; want the %d after the '|'", len(got), err, len(want))
	}
	if got, err := io.ReadAll(a); err != nil || string(got) != "back" {
		t.Fatalf("read %q, %v; want back", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A Scanner's error at the end cuts both sides: neither peer reads a
// clean end.
func TestJoinScannedEndCuts(t *testing.T) {
	a, aJoin := flowtest.TCPPair(t)
	bJoin, b := flowtest.TCPPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := JoinScanned(aJoin, bJoin, nil, &dropScanner{}, nil)
		done <- err
	}()
	a.Write([]byte("no bar"))
	a.CloseWrite()
	if err := <-done; !Cut(err) {
		t.Fatalf("JoinScanned: %v, want a cut", err)
	}
	if _, err := io.ReadAll(b); err == nil {
		t.Error("b read a clean end")
	}
	if _, err := io.ReadAll(a); err == nil {
		t.Error("a read a clean end")
	}
}

// A stream's bytes reach the Scanner from the stream itself (PushTo), and
// the rest, once plain, by Join's own PushTo; an End error cuts.
func TestJoinScannedStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string // "": a cut
	}{
		{"plain", []string{"dropped", "also dropped|kept", "0123456789"}, "|kept0123456789"},
		{"no bar", []string{"dropped"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near, far, closeSessions := streamPair(t)
			defer closeSessions()
			a, aJoin := flowtest.TCPPair(t)
			done := make(chan error, 1)
			go func() {
				_, err := JoinScanned(aJoin, near, nil, nil, &dropScanner{})
				done <- err
			}()
			go func() {
				for _, s := range tc.in {
					far.Write([]byte(s))
				}
				far.CloseWrite()
			}()
			got, err := io.ReadAll(a)
			if tc.want == "" {
				if err == nil {
					t.Errorf("read %q and a clean end, want a cut", got)
				}
				a.Close()
				if err := <-done; !Cut(err) {
					t.Errorf("JoinScanned: %v, want a cut", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("read %q, %v; want %q", got, err, tc.want)
			}
			a.Close()
			far.Close()
			<-done
		})
	}
}
