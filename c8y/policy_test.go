package c8y_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"rtcp"
	"rtcp/c8y"
)

var (
	printersSecret = []byte("printers-secret-0123456789abcdef")
	c8ySecret      = []byte("c8y-door-secret-0123456789abcdef")
)

// policyDP is newDP with a DP Policy: the names printer-* belong to the
// key "printers", and anonymous servers may take other names if
// anonymous is true.
func policyDP(t *testing.T, anonymous bool, key string) *dpSetup {
	t.Helper()
	dp := &rtcp.DiscoverPoint{Policy: &rtcp.Policy{
		Keys:             map[string][]byte{"printers": printersSecret, "c8y": c8ySecret},
		AnonymousServers: anonymous,
		AnonymousClients: true,
		Names:            []rtcp.NameRule{{Name: "printer-*", Owners: []string{"printers"}}},
	}}
	return serveDP(t, &c8y.Server{DP: dp, Key: key}) // no Token: loopback may create keys
}

// A key from loopback can no longer take a name that the DP's Policy
// gives to another key (issue 14): the owner's server still gets it.
func TestKeysAPIObeysPolicy(t *testing.T) {
	s := policyDP(t, true, "")
	code, _, body := s.newKey(t, "", url.Values{"name": {"printer-1"}})
	if code != http.StatusForbidden || !strings.Contains(body, "belongs to another key") {
		t.Fatalf("key for an owned name: %d %s, want 403", code, body)
	}
	if st := s.srv.Stats(); st.Refused["policy"] != 1 || st.Keys != 0 {
		t.Errorf("Stats = %+v, want one policy refusal and no key", st)
	}

	// The owner registers its name.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc := rtcp.ListenConfig{Credential: &rtcp.Credential{Key: "printers", Secret: printersSecret}}
	l, err := lc.Listen(ctx, s.dpAddr, "printer-1")
	if err != nil {
		t.Fatalf("the owner cannot register its name: %v", err)
	}
	l.Close()

	// A name no rule owns is the anonymous door's, as it would be any
	// anonymous server's.
	if code, _, body := s.newKey(t, "", url.Values{"name": {"lab-vnc"}}); code != http.StatusCreated {
		t.Fatalf("key for a free name: %d %s", code, body)
	}
	if _, err := s.srv.NewKey("printer-2", 0); !errors.Is(err, rtcp.ErrUnauthorized) {
		t.Errorf("NewKey(printer-2) = %v, want ErrUnauthorized", err)
	}
}

func TestKeysAPIPolicyPrincipal(t *testing.T) {
	for _, tt := range []struct {
		name      string
		anonymous bool
		key       string
		names     map[string]int // name -> want status
	}{
		{"anonymous servers refused", false, "", map[string]int{"lab-vnc": 403, "printer-1": 403, "": 403}},
		{"anonymous servers admitted", true, "", map[string]int{"lab-vnc": 201, "printer-1": 403, "": 201}},
		{"the owner's key", false, "printers", map[string]int{"lab-vnc": 201, "printer-1": 201, "": 201}},
		{"another key", false, "c8y", map[string]int{"lab-vnc": 201, "printer-1": 403}},
		{"a key the DP does not know", true, "nobody", map[string]int{"lab-vnc": 403}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := policyDP(t, tt.anonymous, tt.key)
			for name, want := range tt.names {
				var params url.Values
				if name != "" {
					params = url.Values{"name": {name}}
				}
				if code, _, body := s.newKey(t, "", params); code != want {
					t.Errorf("name %q: %d %s, want %d", name, code, body, want)
				}
			}
		})
	}
}

// Keys are bounded: each holds a name at the DP (issue 14: 99,998 keys
// filled MaxNames in 33 s). A key that expires makes room.
func TestKeysCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := new(rtcp.DiscoverPoint)
		srv := &c8y.Server{DP: dp, MaxKeys: 3}
		defer dp.Close()
		defer srv.Close()
		post := func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", c8y.KeysPath+"?ttl=60", nil)
			req.RemoteAddr = "127.0.0.1:1"
			srv.ServeHTTP(rec, req)
			return rec
		}
		for i := range 3 {
			if rec := post(); rec.Code != http.StatusCreated {
				t.Fatalf("key %d: %d %s", i, rec.Code, rec.Body)
			}
		}
		if rec := post(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "MaxKeys") {
			t.Fatalf("a fourth key: %d %s, want 503 naming MaxKeys", rec.Code, rec.Body)
		}
		if _, err := srv.NewKey("x", 0); !errors.Is(err, c8y.ErrTooManyKeys) {
			t.Fatalf("NewKey = %v, want ErrTooManyKeys", err)
		}
		st := srv.Stats()
		if st.Keys != 3 || st.Issued != 3 || st.Refused["max_keys"] != 2 {
			t.Fatalf("Stats = %+v, want 3 keys, 3 issued, 2 refused for max_keys", st)
		}

		time.Sleep(61 * time.Second) // the keys expire
		synctest.Wait()
		if rec := post(); rec.Code != http.StatusCreated {
			t.Fatalf("a key after the others expired: %d %s", rec.Code, rec.Body)
		}
		if st := srv.Stats(); st.Keys != 1 || st.Issued != 4 {
			t.Fatalf("Stats = %+v, want 1 key, 4 issued", st)
		}
	})
	if c8y.DefaultMaxKeys < 100 || c8y.DefaultMaxKeys > 100000 {
		t.Errorf("DefaultMaxKeys = %d", c8y.DefaultMaxKeys)
	}
}

// Refusals of every kind are counted.
func TestServerCountsRefusals(t *testing.T) {
	s := newDP(t, "tok")
	s.newKey(t, "wrong", nil)
	s.newKey(t, "tok", url.Values{"ttl": {"0"}})
	s.newKey(t, "tok", url.Values{"name": {"plc"}})
	s.newKey(t, "tok", url.Values{"name": {"plc"}})
	if _, err := clientWS(s, "no-such-key"); err == nil {
		t.Fatal("a client got in with an unknown key")
	}
	want := map[string]uint64{"unauthorized": 1, "bad_request": 1, "name_taken": 1, "unknown_key": 1,
		"policy": 0, "max_keys": 0, "dp": 0}
	st := s.srv.Stats()
	for k, v := range want {
		if st.Refused[k] != v {
			t.Errorf("Refused[%q] = %d, want %d (%v)", k, st.Refused[k], v, st.Refused)
		}
	}
	if len(st.Refused) != len(want) || st.Issued != 1 || st.Keys != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// The connection key is a secret: the Server's logs never show it whole,
// even at Debug and when the key is the name (issue 14: it was logged at
// INFO).
func TestServerDoesNotLogKeys(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// (The DP's own logs are the DP's: it names the server, which is the
	// key here, at Debug when a session opens.)
	s := serveDP(t, &c8y.Server{DP: new(rtcp.DiscoverPoint), Token: "tok", Logger: logger})
	host, port := echoService(t)
	code, kr, body := s.newKey(t, "tok", url.Values{"host": {host}, "port": {strconv.Itoa(port)}})
	if code != http.StatusCreated || kr.Name != kr.Key {
		t.Fatalf("create key: %d %s", code, body)
	}
	a := &c8y.Agent{URL: s.http.URL, Logger: logger}
	served := make(chan error, 1)
	go func() { served <- a.Serve(context.Background(), strings.NewReader(kr.Operation+"\n")) }()
	client, err := clientWS(s, kr.Key)
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, client)
	client.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	clientWS(s, kr.Key) // refused: used
	if got := logs.String(); strings.Contains(got, kr.Key) || !strings.Contains(got, kr.Key[:8]+"…") {
		t.Errorf("the log shows the key, or not even its start:\n%s", got)
	}
}

// A Policy installed with SetPolicy governs the keys' names at once
// (issue 14: the Server read the DP's Policy field, so a policy set while
// the DP ran never reached it): a new key for a name the policy now gives
// to another key is refused, and a key issued before is withdrawn at its
// next session, so that the owner may take its name.
func TestKeysAPIObeysSetPolicy(t *testing.T) {
	s := policyDP(t, false, "c8y")
	code, _, body := s.newKey(t, "", url.Values{"name": {"lab-vnc"}})
	if code != http.StatusCreated {
		t.Fatalf("key for a free name: %d %s", code, body)
	}
	// Two keys of the Server's one Key do not share a name.
	if code, _, body := s.newKey(t, "", url.Values{"name": {"lab-vnc"}}); code != http.StatusConflict {
		t.Fatalf("a second key for lab-vnc: %d %s, want 409", code, body)
	}

	if err := s.dp.SetPolicy(&rtcp.Policy{
		Keys:             map[string][]byte{"printers": printersSecret, "c8y": c8ySecret},
		AnonymousClients: true,
		Names:            []rtcp.NameRule{{Name: "lab-*", Owners: []string{"printers"}}},
	}); err != nil {
		t.Fatal(err)
	}
	code, _, body = s.newKey(t, "", url.Values{"name": {"lab-2"}})
	if code != http.StatusForbidden || !strings.Contains(body, "belongs to another key") {
		t.Fatalf("key for a name SetPolicy gave to another key: %d %s, want 403", code, body)
	}
	if _, err := s.srv.NewKey("lab-3", 0); !errors.Is(err, rtcp.ErrUnauthorized) {
		t.Errorf("NewKey(lab-3) = %v, want ErrUnauthorized", err)
	}
	if st := s.srv.Stats(); st.Refused["policy"] != 2 || st.Refused["name_taken"] != 1 || st.Issued != 1 {
		t.Errorf("Stats = %+v, want 2 policy refusals, 1 name_taken, 1 issued", st)
	}

	if c, err := rtcp.Dial(s.dpAddr, "lab-vnc"); err == nil {
		c.Close()
		t.Fatal("a client reached lab-vnc after SetPolicy gave the name to another key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc := rtcp.ListenConfig{Credential: &rtcp.Credential{Key: "printers", Secret: printersSecret}}
	l, err := lc.Listen(ctx, s.dpAddr, "lab-vnc")
	if err != nil {
		t.Fatalf("the owner cannot take its name from the withdrawn key: %v", err)
	}
	l.Close()
}
