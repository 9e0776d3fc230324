package rtcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"testing"

	"rtcp/internal/flowtest"
	"rtcp/internal/relay"
	"rtcp/internal/tcpreset"
)

// The DP's reading of a brokered session's records (directrelay.go),
// without namespaces: the scanner alone, and dp.join over loopback TCP
// pairs standing for the client's connection and the server's session.

// scanPieces feeds in to a recordScanner in pieces of size bytes and
// returns what it passed on, and the first error (of Scan or End).
func scanPieces(r *recordScanner, in []byte, size int) ([]byte, error) {
	var out []byte
	for len(in) > 0 && !r.Plain() {
		p := in[:min(size, len(in))]
		in = in[len(p):]
		k, err := r.Scan(p)
		if err != nil {
			return out, err
		}
		out = append(out, p[:k]...)
	}
	out = append(out, in...) // unread, as the relay's fast paths pass them
	return out, r.End()
}

// report is the report record of a side that wrote n bytes directly.
func report(n uint64) string {
	var b [reportLen]byte
	b[0] = recReport
	binary.BigEndian.PutUint64(b[1:], n)
	return string(b[:])
}

// The records pass as they are, in pieces of any size; the report is
// counted, and passed on to no one.
func TestRecordScannerPieces(t *testing.T) {
	big := bytes.Repeat([]byte{'d', 0xff, 0xff}, 1<<15)[:65535]
	for _, tc := range []struct {
		name     string
		in, want string
		moved    bool
		plain    bool
		report   uint64
	}{
		{"moved", "d\x00\x05hellod\x00\x01!m" + report(1<<40+7), "d\x00\x05hellod\x00\x01!m", true, false, 1<<40 + 7},
		{"moved, nothing written", "m" + report(0), "m", true, false, 0},
		{"a record that looks like records", "d\xff\xff" + string(big) + "m" + report(3), "d\xff\xff" + string(big) + "m", true, false, 3},
		{"unframed", "d\x00\x02hiu and then anything: m x \x00", "d\x00\x02hiu and then anything: m x \x00", false, true, 0},
		{"ended framed", "d\x00\x02hi", "d\x00\x02hi", false, false, 0},
		{"empty", "", "", false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 3, 4, 7, 1 << 20} {
				moved, reports := 0, 0
				var count uint64
				r := &recordScanner{from: "client", moved: func() { moved++ }, report: func(n uint64) { reports++; count = n }}
				got, err := scanPieces(r, []byte(tc.in), size)
				if err != nil {
					t.Fatalf("pieces of %d: %v", size, err)
				}
				if !bytes.Equal(got, []byte(tc.want)) {
					t.Fatalf("pieces of %d: passed on %d bytes, want %d", size, len(got), len(tc.want))
				}
				if (moved == 1) != tc.moved || moved > 1 || r.Plain() != tc.plain {
					t.Fatalf("pieces of %d: moved %d times, plain %v; want moved %v, plain %v", size, moved, r.Plain(), tc.moved, tc.plain)
				}
				if reports != moved || count != tc.report {
					t.Fatalf("pieces of %d: %d reports, of %d; want %d, of %d", size, reports, count, moved, tc.report)
				}
			}
		})
	}
}

// Bytes that break the records' rules are an error, never passed on past
// the rule they break.
func TestRecordScannerMalformed(t *testing.T) {
	for _, tc := range []struct{ name, in, passed string }{
		{"unknown type", "d\x00\x01ax", "d\x00\x01a"},
		{"empty data record", "d\x00\x00", "d\x00"},
		{"bytes after moved", "mzz", "m"},
		{"bytes after the report", "m" + report(5) + "z", "m"},
		{"ended without the report", "d\x00\x01am", "d\x00\x01am"},
		{"ended inside the report", "m" + report(5)[:4], "m"},
		{"ended inside a header", "d\x00", "d\x00"},
		{"ended inside a payload", "d\x00\x05ab", "d\x00\x05ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 1 << 20} {
				r := &recordScanner{from: "server"}
				got, err := scanPieces(r, []byte(tc.in), size)
				if err == nil {
					t.Fatalf("pieces of %d: no error", size)
				}
				if !bytes.HasPrefix([]byte(tc.passed), got) {
					t.Fatalf("pieces of %d: passed on %q, want at most %q", size, got, tc.passed)
				}
				// A scanner that has failed passes nothing more, and
				// says so (the relay stops at its first error).
				if k, err := r.Scan([]byte("d\x00\x01a")); k != 0 || err == nil {
					t.Fatalf("pieces of %d: Scan after the error: %d, %v; want 0 and an error", size, k, err)
				}
			}
		})
	}
}

// brokeredJoin is a DP relaying one brokered session between the ends
// client and server (what the client and the server write and read).
// Each end is a raw leg as rtcp's own ends hold it (rawConn): Linux
// reports the DP's reset to one call only, and a bare TCP connection
// whose Write took it reads a bare io.EOF after it, cut or not
// (rawleg.go).
type brokeredJoin struct {
	client, server net.Conn
	done           chan error // what dp.join returned
}

func newBrokeredJoin(t *testing.T, dp *DiscoverPoint) *brokeredJoin {
	clientTCP, clientDP := tcpPair(t)
	serverDP, serverTCP := tcpPair(t)
	client := &rawConn{Conn: clientTCP, local: clientTCP.LocalAddr(), remote: clientTCP.RemoteAddr()}
	server := &rawConn{Conn: serverTCP, local: serverTCP.LocalAddr(), remote: serverTCP.RemoteAddr()}
	t.Cleanup(func() { client.Close(); server.Close() })
	j := &brokeredJoin{client: client, server: server, done: make(chan error, 1)}
	b := dp.newBrokeredRelay()
	go func() {
		_, err := dp.join(context.Background(), clientDP, serverDP, "printer-7", b)
		j.done <- err
	}()
	return j
}

// sendPieces writes in to c, its last 1000 bytes one at a time (the DP
// reads them in pieces), and then half-closes it.
func sendPieces(c net.Conn, in []byte) error {
	for len(in) > 0 {
		k := 1
		if len(in) > 1000 {
			k = len(in) - 1000
		}
		if _, err := c.Write(in[:k]); err != nil {
			return err
		}
		in = in[k:]
	}
	return c.(interface{ CloseWrite() error }).CloseWrite()
}

// A session that moves both ways crosses the DP intact, and is counted
// as moved; one that goes unframed is relayed as it is, and counted as
// relayed when it ends; one that moved one way only is counted as partly
// direct, not relayed.
func TestDPBrokeredRelay(t *testing.T) {
	raw := bytes.Repeat([]byte("raw bytes, any m or u or d\x00\x00 "), 1<<15)
	for _, tc := range []struct {
		name           string
		toServer, back []byte
		path           string // how the DP counts it
	}{
		{"moved", []byte("d\x00\x05hellom" + report(1000)), []byte("d\x00\x02hid\x00\x01!m" + report(24)), pathMoved},
		{"unframed", append([]byte("d\x00\x02hiu"), raw...), append([]byte("u"), raw...), pathRelayed},
		{"one way moved", []byte("d\x00\x05hellom" + report(1024)), []byte("d\x00\x02hi"), pathPartly},
		{"one way moved, one unframed", append([]byte("d\x00\x02hiu"), raw...), []byte("d\x00\x02hom" + report(7)), pathPartly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := new(DiscoverPoint)
			dp.init()
			defer dp.Close()
			j := newBrokeredJoin(t, dp)
			errc := make(chan error, 2)
			go func() { errc <- sendPieces(j.client, tc.toServer) }()
			go func() { errc <- sendPieces(j.server, tc.back) }()
			toServer, toServerReport := withoutReport(tc.toServer)
			back, backReport := withoutReport(tc.back)
			got, err := io.ReadAll(j.server)
			if err != nil || !bytes.Equal(got, toServer) {
				t.Errorf("the server read %d bytes, %v; want the %d sent before any report, and the end", len(got), err, len(toServer))
			}
			got, err = io.ReadAll(j.client)
			if err != nil || !bytes.Equal(got, back) {
				t.Errorf("the client read %d bytes, %v; want the %d sent before any report, and the end", len(got), err, len(back))
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			if err := <-j.done; err != nil {
				t.Fatalf("join: %v", err)
			}
			st := dp.Stats()
			counted := map[string]uint64{pathMoved: st.DirectMoved, pathPartly: st.DirectPartly, pathRelayed: st.DirectRelayed}
			if counted[tc.path] != 1 || st.DirectMoved+st.DirectPartly+st.DirectRelayed != 1 {
				t.Errorf("Stats: %d moved, %d partly, %d relayed; want the session counted %s", st.DirectMoved, st.DirectPartly, st.DirectRelayed, tc.path)
			}
			if carried := st.BytesToServers + st.BytesToClients; carried != uint64(len(toServer)+len(back)) {
				t.Errorf("Stats: %d bytes carried, want %d", carried, len(toServer)+len(back))
			}
			if st.DirectBytes != toServerReport+backReport {
				t.Errorf("Stats: %d direct bytes, want the %d reported", st.DirectBytes, toServerReport+backReport)
			}
		})
	}
}

// withoutReport returns a direction's bytes without the report at its end
// (after 'm'), if any, and the report's count.
func withoutReport(b []byte) ([]byte, uint64) {
	if len(b) < reportLen+1 || b[0] == 'u' || b[len(b)-reportLen-1] != 'm' || b[len(b)-reportLen] != recReport {
		return b, 0
	}
	return b[:len(b)-reportLen], binary.BigEndian.Uint64(b[len(b)-8:])
}

// Malformed records cut their session, both ways, with an error (a
// reset on TCP, never a clean end); a session next to it goes on.
func TestDPBrokeredRelayMalformed(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"unknown type", "d\x00\x01aGET / HTTP/1.1\r\n"},
		{"empty data record", "d\x00\x00"},
		{"bytes after moved", "mzz"},
		{"ended without the report", "m"},
		{"bytes after the report", "m" + report(1) + "z"},
		{"ended inside a record", "d\x00\x05ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := new(DiscoverPoint)
			dp.init()
			defer dp.Close()
			bad := newBrokeredJoin(t, dp)
			good := newBrokeredJoin(t, dp)
			go sendPieces(bad.client, []byte(tc.in))
			err := <-bad.done
			if !relay.Cut(err) {
				t.Fatalf("join: %v, want a cut", err)
			}
			if _, err := io.ReadAll(bad.server); err == nil {
				t.Error("the server's read of a cut session ended cleanly")
			}
			if _, err := io.ReadAll(bad.client); err == nil {
				t.Error("the client's read of a cut session ended cleanly")
			}
			want := []byte("d\x00\x03abcm")
			go sendPieces(good.client, append(want, report(1)...))
			go sendPieces(good.server, nil)
			if got, err := io.ReadAll(good.server); err != nil || !bytes.Equal(got, want) {
				t.Errorf("the other session's server read %q, %v", got, err)
			}
			if _, err := io.ReadAll(good.client); err != nil {
				t.Errorf("the other session's client: %v", err)
			}
			if err := <-good.done; err != nil {
				t.Errorf("the other session's join: %v", err)
			}
			// Neither session moved both ways; the good one moved its
			// client's direction.
			if st := dp.Stats(); st.DirectMoved != 0 || st.DirectPartly+st.DirectRelayed != 2 || st.DirectPartly < 1 {
				t.Errorf("Stats: %d moved, %d partly, %d relayed; want 0 moved, 2 ended, at least 1 partly", st.DirectMoved, st.DirectPartly, st.DirectRelayed)
			}
		})
	}
}

// TestDPBrokeredCutTakenByAWrite is TestDPBrokeredRelayMalformed's
// losing interleaving, forced: the client goes on writing after its bad
// record, one of its Writes takes the DP's reset, and only then does it
// read. Linux has reported the reset to the Write; the client's Read must
// still fail, not end cleanly (rawleg.go).
func TestDPBrokeredCutTakenByAWrite(t *testing.T) {
	dp := new(DiscoverPoint)
	dp.init()
	defer dp.Close()
	j := newBrokeredJoin(t, dp)
	if _, err := j.client.Write([]byte("d\x00\x01aGET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := <-j.done; !relay.Cut(err) {
		t.Fatalf("join: %v, want a cut", err)
	}
	var werr error
	for werr == nil {
		_, werr = j.client.Write([]byte("more of the request"))
	}
	if !tcpreset.Is(werr) {
		t.Fatalf("the client's Write after the cut: %v, want the reset", werr)
	}
	if got, err := io.ReadAll(j.client); err == nil {
		t.Errorf("the client's read of a cut session ended cleanly, with %q", got)
	}
}

// TestDPBrokeredCutOverTLS: a DP with a TLSConfig cuts a session whose
// client's leg is TLS (the server sent a record the DP cannot read): the
// client's read fails. A Close of the DP's TLS connection would say a
// clean goodbye (close_notify) that the client reads as the end.
func TestDPBrokeredCutOverTLS(t *testing.T) {
	dp := new(DiscoverPoint)
	dp.init()
	defer dp.Close()
	clientDP, clientTLS := flowtest.TLSPair(t)
	serverDP, server := tcpPair(t)
	defer server.Close()
	client := &rawConn{Conn: clientTLS, local: clientTLS.LocalAddr(), remote: clientTLS.RemoteAddr()}
	done := make(chan error, 1)
	go func() {
		_, err := dp.join(context.Background(), clientDP, serverDP, "printer-7", dp.newBrokeredRelay())
		done <- err
	}()
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !relay.Cut(err) {
		t.Fatalf("join: %v, want a cut", err)
	}
	if _, err := io.ReadAll(client); err == nil {
		t.Error("the TLS client's read of a cut session ended cleanly")
	}
	if _, err := io.ReadAll(server); err == nil {
		t.Error("the server's read of a cut session ended cleanly")
	}
}

// TestDPDataLinkOverTLS: a data link over TLS (keepData) ends as a TCP
// one does: with a reset under TLS when the DP cuts its session (the
// client sent a record the DP cannot read), and cleanly, with all its
// bytes, when the session ends cleanly.
func TestDPDataLinkOverTLS(t *testing.T) {
	for _, cut := range []bool{true, false} {
		t.Run(map[bool]string{true: "cut", false: "clean end"}[cut], func(t *testing.T) {
			dp := new(DiscoverPoint)
			dp.init()
			defer dp.Close()
			client, clientDP := tcpPair(t)
			defer client.Close()
			serverDP, serverTLS := flowtest.TLSPair(t)
			server := &rawConn{Conn: serverTLS, local: serverTLS.LocalAddr(), remote: serverTLS.RemoteAddr()}
			done := make(chan error, 1)
			go func() {
				_, err := dp.join(context.Background(), clientDP, dp.keepData(serverDP), "printer-7", dp.newBrokeredRelay())
				done <- err
			}()
			in, want := "d\x00\x02hiu"+strings.Repeat("raw", 1<<16), "d\x00\x02hiu"+strings.Repeat("raw", 1<<16)
			if cut {
				in, want = "d\x00\x02hix", "d\x00\x02hi"
			}
			go sendPieces(client, []byte(in))
			if !cut {
				// Not on the cut session: the server's write, or
				// its CloseWrite's close_notify, could take the
				// reset, which this test is not about.
				go sendPieces(server, []byte("u"))
			}
			got, err := io.ReadAll(server)
			if cut && err == nil {
				t.Errorf("the server's read of a cut session over a TLS data link ended cleanly, with %q", got)
			}
			if !cut && (err != nil || string(got) != want) {
				t.Errorf("the server read %d bytes, %v; want the %d sent, and a clean end", len(got), err, len(want))
			}
			if err := <-done; relay.Cut(err) != cut {
				t.Errorf("join: %v, want a cut: %v", err, cut)
			}
		})
	}
}

// decodeDPRecords is SPEC.md's records as the DP reads them, plainly:
// the bytes it passes on, and whether the direction is well formed.
func decodeDPRecords(in []byte) (out []byte, ok bool) {
	i := 0
	for i < len(in) {
		switch in[i] {
		case 'd':
			if len(in) < i+3 {
				return in, false
			}
			l := int(in[i+1])<<8 | int(in[i+2])
			if l == 0 {
				return in[:i+3], false
			}
			if len(in) < i+3+l {
				return in, false
			}
			i += 3 + l
		case 'u':
			return in, true
		case 'm':
			rest := in[i+1:]
			return in[:i+1], len(rest) == reportLen && rest[0] == recReport
		default:
			return in[:i], false
		}
	}
	return in, true
}

// The DP's record reader never panics, passes on only a prefix of what it
// read, and agrees with decodeDPRecords, however its input is cut up.
func FuzzDPRecords(f *testing.F) {
	f.Add([]byte("d\x00\x05hellod\x00\x01!m"+report(12345)), uint8(1))
	f.Add([]byte("m"+report(0)), uint8(4))
	f.Add([]byte("d\x00\x02hiu raw m bytes"), uint8(3))
	f.Add([]byte("d\x00\x05ab"), uint8(2))
	f.Add([]byte("mzz"), uint8(0))
	f.Add([]byte("d\x00\x00"), uint8(5))
	f.Add([]byte("x"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		moved, reports := 0, 0
		r := &recordScanner{from: "client", moved: func() { moved++ }, report: func(uint64) { reports++ }}
		got, err := scanPieces(r, in, int(size)+1)
		if !bytes.HasPrefix(in, got) {
			t.Fatalf("passed on %q, not a prefix of %q", got, in)
		}
		want, ok := decodeDPRecords(in)
		if ok != (err == nil) {
			t.Fatalf("error %v, want well formed: %v", err, ok)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("passed on %q, want %q", got, want)
		}
		if !ok && len(got) > len(want) {
			t.Fatalf("passed on %q, want at most %q", got, want)
		}
		if moved > 1 || reports > moved {
			t.Fatalf("moved %d times, %d reports", moved, reports)
		}
		if ok && reports != moved {
			t.Fatalf("moved and well formed, with %d reports", reports)
		}
	})
}

// The reports are the sides' word, up to 2^64-1 each: DirectBytes stops
// at its largest value rather than wrap round to a small count (a
// counter that goes back looks like a DP restart to a monitor).
func TestDPDirectBytesSaturates(t *testing.T) {
	dp := new(DiscoverPoint)
	dp.init()
	defer dp.Close()
	j := newBrokeredJoin(t, dp)
	errc := make(chan error, 2)
	go func() { errc <- sendPieces(j.client, []byte("m"+report(math.MaxUint64-1))) }()
	go func() { errc <- sendPieces(j.server, []byte("m"+report(5))) }()
	for _, c := range []net.Conn{j.server, j.client} {
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-j.done; err != nil {
		t.Fatalf("join: %v", err)
	}
	if st := dp.Stats(); st.DirectBytes != math.MaxUint64 || st.DirectMoved != 1 {
		t.Errorf("Stats: %d direct bytes, %d moved; want %d (the most it counts), 1", st.DirectBytes, st.DirectMoved, uint64(math.MaxUint64))
	}
}

// A side's relay that ends after its 'm' without the report of its Close
// (the side died, aborted, or its report could not be written) cuts the
// session, and the DP says that, whether the relay ended cleanly or was
// reset, on either side: not that the side's records broke the rules.
func TestDPMovedUnreported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server bool // the server moved, else the client
		reset  bool // its relay is reset, else it ends cleanly
	}{
		{"client ends", false, false},
		{"client resets", false, true},
		{"server ends", true, false},
		{"server resets", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := new(DiscoverPoint)
			dp.init()
			defer dp.Close()
			j := newBrokeredJoin(t, dp)
			moved, peer := j.client, j.server
			if tc.server {
				moved, peer = j.server, j.client
			}
			if _, err := moved.Write([]byte("d\x00\x02him")); err != nil {
				t.Fatal(err)
			}
			// The peer has read 'm': the DP has read it too.
			buf := make([]byte, 6)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "d\x00\x02him" {
				t.Fatalf("the peer read %q, %v", buf, err)
			}
			if tc.reset {
				moved.(*rawConn).abort(errors.New("cut"))
			} else {
				moved.Close()
			}
			err := <-j.done
			if !relay.Cut(err) || !errors.Is(err, errMovedUnreported) {
				t.Errorf("join: %v; want a cut, errMovedUnreported", err)
			}
		})
	}
}

// writeFailConn is a DP's connection to a side whose writes fail.
type writeFailConn struct {
	net.Conn
	err error
}

func (c writeFailConn) Write([]byte) (int, error) { return 0, c.err }

// TestDPBrokeredWriteFails: when the DP's write of one side's 'm' to the
// other side fails, the session is cut, and its error blames the side
// written to, whose connection failed: not the side that moved, as a
// relay that ended unreported would.
func TestDPBrokeredWriteFails(t *testing.T) {
	for _, to := range []string{"server", "client"} {
		t.Run("to the "+to, func(t *testing.T) {
			dp := new(DiscoverPoint)
			dp.init()
			defer dp.Close()
			client, clientDP := tcpPair(t)
			serverDP, server := tcpPair(t)
			defer client.Close()
			defer server.Close()
			boom := errors.New("the connection is gone")
			mover := client
			var c, s net.Conn = clientDP, writeFailConn{serverDP, boom}
			if to == "client" {
				mover = server
				c, s = writeFailConn{clientDP, boom}, serverDP
			}
			done := make(chan error, 1)
			go func() {
				_, err := dp.join(context.Background(), c, s, "printer-7", dp.newBrokeredRelay())
				done <- err
			}()
			if _, err := mover.Write([]byte("m")); err != nil {
				t.Fatal(err)
			}
			err := <-done
			var we *brokeredWriteError
			if !relay.Cut(err) || !errors.As(err, &we) || we.to != to || !errors.Is(err, boom) || errors.Is(err, errMovedUnreported) {
				t.Errorf("join: %v; want a cut, a brokeredWriteError to the %s wrapping %v", err, to, boom)
			}
		})
	}
}
