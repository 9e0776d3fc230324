package mux_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"rtcp/internal/flowtest"
	"rtcp/internal/mux"
	"rtcp/internal/yamuxlink"
)

// TestSpliceWithoutPipes: with no pipe to be had (out of descriptors),
// both splicing paths copy instead - SpliceFrom into the link, and the
// split frames out of it into a relayed stream's destination - and every
// byte arrives.
func TestSpliceWithoutPipes(t *testing.T) {
	mux.SetNoPipes(true)
	defer mux.SetNoPipes(false)

	cc, sc := flowtest.TCPPair(t)
	client := mux.New(cc, yamuxlink.NewFramer(cc, cc, yamuxlink.DefaultWindow, true), yamuxlink.Config(yamuxlink.DefaultWindow))
	sfr := yamuxlink.NewFramer(sc, sc, yamuxlink.DefaultWindow, false)
	sfr.SplitData()
	server := mux.New(sc, sfr, yamuxlink.Config(yamuxlink.DefaultWindow))
	defer func() {
		done := make(chan struct{})
		go func() { server.Close(); close(done) }()
		client.Close()
		<-done
	}()
	accepted := make(chan *mux.Stream, 1)
	go func() {
		st, _ := server.Accept()
		accepted <- st
	}()
	a, err := client.Open(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("Accept failed")
	}

	feed, src := flowtest.TCPPair(t)
	w, out := flowtest.TCPPair(t)
	type result struct {
		n   int64
		ok  bool
		err error
	}
	spliced := make(chan result, 1)
	go func() {
		n, ok, err := a.SpliceFrom(src, nil)
		if ok && err == nil {
			a.CloseWrite()
		}
		spliced <- result{n, ok, err}
	}()
	written := make(chan error, 1)
	go func() {
		_, err := b.WriteTo(w)
		w.CloseWrite()
		written <- err
	}()

	data := bytes.Repeat([]byte("no pipe, no problem. "), 200000) // 4.2 MB
	go func() {
		feed.Write(data)
		feed.CloseWrite()
	}()
	h := sha256.New()
	out.SetReadDeadline(time.Now().Add(time.Minute)) // a lost byte or end must fail, not hang
	n, err := io.Copy(h, out)
	if err != nil || n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha(data)) {
		t.Fatalf("destination read %d bytes (%v), want the %d sent, intact", n, err, len(data))
	}
	if r := <-spliced; !r.ok || r.err != nil || r.n != int64(len(data)) {
		t.Errorf("SpliceFrom = %d, %v, %v; want %d, true, nil", r.n, r.ok, r.err, len(data))
	}
	if err := <-written; err != nil {
		t.Errorf("WriteTo: %v", err)
	}
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
