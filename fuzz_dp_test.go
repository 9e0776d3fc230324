package rtcp

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"rtcp/protocol/plan5"
)

// echoLink is a Link whose every session echoes what it is sent.
type echoLink struct {
	wg   sync.WaitGroup
	done chan struct{}
}

func (l *echoLink) Open(ctx context.Context, name, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	l.wg.Go(func() {
		io.Copy(b, b)
		b.Close()
	})
	return a, nil
}

func (l *echoLink) Done() <-chan struct{} { return l.done }

// brokerFor marks l, a link of dp's table, as a direct server's link from
// addr, as a server's Aloha with Direct does, so that a client asking for
// a direct path gets the DP's offer (and its early offer) and its bytes
// are read as records.
func brokerFor(dp *DiscoverPoint, l Link, addr string) {
	dp.links.mu.Lock()
	defer dp.links.mu.Unlock()
	e := dp.links.links[l]
	e.direct, e.remote = true, addr
}

// FuzzDPConn feeds bytes to the DP's connection handler, the function
// Serve runs for each connection, as a peer would send them: whatever
// comes, it must end when the peer goes away, without a panic, a hang or
// a leaked goroutine. Servers named "echo" and "decho" are there for
// clients to reach, the second a direct server's, which the DP brokers
// direct sessions for. The seeds are transcripts of every kind of peer.
func FuzzDPConn(f *testing.F) {
	msgs := func(ms ...plan5.Message) []byte {
		var b []byte
		for _, m := range ms {
			b = plan5.AppendMessage(b, m)
		}
		return b
	}
	v := plan5.Version
	f.Add(msgs( // a server: its link, a heartbeat, answers to a Connect
		&plan5.Aloha{V: v, R: plan5.RoleIS, N: "printer", Owner: "o", Window: 1 << 16, MaxLine: 1 << 16, HalfClose: true, HeartBeat: 1000},
		&plan5.Aloha{V: v, R: plan5.RoleIS, N: "printer"},
		&plan5.Ack{X: 1}, &plan5.Data{X: 1, C: []byte("hello"), Window: 100}, &plan5.Close{X: 1, Half: true}, &plan5.Close{X: 1},
		&plan5.Close{X: -1, R: "bye"}))
	f.Add(msgs( // a JSON client of echo
		&plan5.Aloha{V: v, R: plan5.RoleIC, N: "me", Window: 1 << 16, HalfClose: true, HeartBeat: 500},
		&plan5.Connect{N: "echo"}, &plan5.Data{X: 1, C: []byte("ping")}, &plan5.Data{X: 1, Window: 4}, &plan5.Close{X: 1, Half: true}))
	f.Add(msgs( // a plain client, a name nobody serves
		&plan5.Aloha{V: v, R: plan5.RoleIC}, &plan5.Connect{N: "nobody"}))
	f.Add(append(msgs( // a raw client
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "echo"}), "raw bytes\x00\xff"...))
	f.Add(append(msgs( // a yamux server and a yamux header
		&plan5.Aloha{V: v, R: plan5.RoleIS, N: "y", Transport: "yamux"}), 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0))
	f.Add(msgs(&plan5.Aloha{V: v, R: plan5.RoleIS, N: "d", Transport: "data", Token: "00ff"}))
	f.Add(msgs(&plan5.Aloha{V: v, R: plan5.RoleIS, N: "t", Transport: "tcp"}, &plan5.Ack{X: -1, R: "no"}))
	f.Add(msgs(&plan5.Aloha{V: 113, R: plan5.RoleIS, N: "old"}))
	f.Add(append(msgs( // a raw client that asks for a direct path, and records
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "echo", Direct: true}), "d\x00\x02hiubytes"...))
	f.Add(append(msgs( // the same, asking for the early offer
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "echo", Direct: true, EarlyPeer: true}), "d\x00\x02himc"...))
	f.Add(append(msgs( // the early offer asked without Direct, on the raw leg and the JSON one
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "echo", EarlyPeer: true}), "bytes"...))
	f.Add(msgs(&plan5.Aloha{V: v, R: plan5.RoleIC}, &plan5.Connect{N: "echo", Direct: true, EarlyPeer: true}))
	f.Add(msgs( // a raw client that sends an early offer of its own instead of a Connect
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Ack{X: 0, Peer: "127.0.0.1:9", Secret: make([]byte, 32)}))
	f.Add(msgs( // a server that answers an open with an early offer, twice
		&plan5.Aloha{V: v, R: plan5.RoleIS, N: "direct", Direct: true},
		&plan5.Ack{X: 0, Peer: "127.0.0.1:9", Secret: make([]byte, 32)}, &plan5.Ack{X: 0, Peer: "127.0.0.1:9", Secret: make([]byte, 32)}))
	f.Add(append(msgs( // a hop that no key vouches for, asking for the early offer
		&plan5.Aloha{V: v, R: plan5.RoleIC, N: "alice", Transport: "raw", Via: "10.0.0.3:9000", ClientAddr: "203.0.113.5:40112"},
		&plan5.Connect{N: "echo", Direct: true, EarlyPeer: true}), "d\x00\x02hi"...))
	f.Add(msgs( // a server that takes part in direct sessions, and a Connect with an offer
		&plan5.Aloha{V: v, R: plan5.RoleIS, N: "direct", Direct: true, Transport: "yamux"},
		&plan5.Connect{N: "c", Peer: "10.0.0.2:5", Secret: make([]byte, 32)}))
	f.Add(append(msgs( // a hop from another DP that claims its client's address, asking for a direct path
		&plan5.Aloha{V: v, R: plan5.RoleIC, N: "alice", Transport: "raw", Via: "10.0.0.3:9000", To: "10.0.0.1:9000", ClientAddr: "203.0.113.5:40112"},
		&plan5.Connect{N: "echo", Direct: true}), "d\x00\x02himc\x00\x00\x00\x00\x00\x00\x00\x02"...))
	f.Add(append(msgs( // a raw client of the direct server: the early offer, the Ack, records
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "decho", Direct: true, EarlyPeer: true}), "d\x00\x02himc\x00\x00\x00\x00\x00\x00\x00\x02"...))
	f.Add(append(msgs( // the same without the early offer, records cut short
		&plan5.Aloha{V: v, R: plan5.RoleIC, Transport: "raw"}, &plan5.Connect{N: "decho", Direct: true}), "d\x00\x09hi"...))
	f.Add(msgs( // a JSON client of the direct server asking for both
		&plan5.Aloha{V: v, R: plan5.RoleIC, Window: 1 << 16}, &plan5.Connect{N: "decho", Direct: true, EarlyPeer: true},
		&plan5.Data{X: 1, C: []byte("ping")}, &plan5.Close{X: 1}))
	f.Add(msgs(&plan5.Aloha{V: v, R: plan5.RoleIS, N: "k", Key: "key-1"}, &plan5.Aloha{V: v, Proof: []byte("x")}))
	f.Add([]byte("0\n{\"V\":10000,\"R\":3,\"N\":\"\"}\n1\n{\"N\":\"echo\"}\n3\n{\"X\":1,\"C\":\"!!\"}\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: dp\r\n\r\n"))

	f.Fuzz(func(t *testing.T, in []byte) {
		dp := &DiscoverPoint{HandshakeTimeout: time.Second, MaxLine: plan5.MinMaxLine}
		link := &echoLink{done: make(chan struct{})}
		remove, err := dp.AddLink("echo", "fuzz", link)
		if err != nil {
			t.Fatal(err)
		}
		dlink := &echoLink{done: make(chan struct{})}
		dremove, err := dp.AddLink("decho", "fuzz", dlink)
		if err != nil {
			t.Fatal(err)
		}
		brokerFor(dp, dlink, "127.0.0.1:9")
		c, peer := net.Pipe()
		served := make(chan struct{})
		go func() {
			defer close(served)
			dp.ServeConn(c)
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, peer)
		}()
		peer.Write(in) // until the DP has read it all, or closed
		peer.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatalf("the DP still serves a connection 10 s after its peer went away; input %q", in)
		}
		<-drained
		remove()
		dremove()
		dp.Close()
		link.wg.Wait()
		dlink.wg.Wait()
	})
}
