package dpmetrics

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"rtcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandler(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp := new(rtcp.DiscoverPoint)
	served := make(chan error, 1)
	go func() { served <- dp.Serve(l) }()
	defer func() {
		dp.Close()
		if err := <-served; !errors.Is(err, rtcp.ErrDiscoverPointClosed) {
			t.Errorf("Serve = %v", err)
		}
	}()
	addr := l.Addr().String()

	sl, err := rtcp.Listen(addr, "metered")
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	go func() {
		c, err := sl.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := rtcp.Dial(addr, "metered")
	if err != nil {
		t.Fatal(err)
	}
	// The answer's end, after the half-close, says the DP's copy toward
	// the server has ended, and so has counted its bytes (the echo alone
	// may come back before the DP's relay counts what it carried).
	c.Write([]byte("0123456789"))
	c.(*rtcp.Conn).CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "0123456789" || err != nil {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	if _, err := rtcp.DialContext(context.Background(), addr, "nobody"); err == nil {
		t.Fatal("dialled nobody")
	}

	rec := httptest.NewRecorder()
	Handler(dp).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"rtcp_dp_servers 1\n",
		"rtcp_dp_links 1\n",
		`rtcp_dp_refused_total{reason="no_server"} 1` + "\n",
		`rtcp_dp_refused_total{reason="max_names"} 0` + "\n",
		`rtcp_dp_bytes_total{direction="to_server"} 10` + "\n",
		"# TYPE rtcp_dp_sessions_total counter\n",
		`rtcp_dp_direct_sessions_total{path="partly"} 0` + "\n",
		`rtcp_dp_name_links{name="metered"} 1` + "\n",
		`rtcp_dp_name_sessions_total{name="metered"} 1` + "\n",
		`rtcp_dp_name_refused_total{name="other",reason="no_server"} 1` + "\n",
		`rtcp_dp_name_sessions_total{name="other"} 0` + "\n",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

func TestBudgetCollector(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rtcp.ConnBudget{Max: 10}
	l := b.Door("api", 1).Listener(tl)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-accepted
	defer sc.Close()

	rec := httptest.NewRecorder()
	Handler(new(rtcp.DiscoverPoint), NewBudgetCollector(b)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"rtcp_dp_conn_budget 10\n",
		`rtcp_dp_door_connections{door="api"} 1` + "\n",
		`rtcp_dp_door_part{door="api"} 1` + "\n",
		`rtcp_dp_door_refused_total{door="api"} 0` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// nopLink is a Link that opens nothing.
type nopLink struct{ done chan struct{} }

func (l *nopLink) Open(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("nopLink opens nothing")
}
func (l *nopLink) Done() <-chan struct{} { return l.done }

// TestNameMetricsBound: names past MaxNameStats and a name spelt "other"
// are summed under name="other", and the scrape stays whole. (A name
// that is not UTF-8 cannot reach the DP: rtcp.ValidName refuses it.)
func TestNameMetricsBound(t *testing.T) {
	dp := &rtcp.DiscoverPoint{MaxNameStats: 2}
	defer dp.Close()
	for _, name := range []string{"other", "w", "x", "y"} {
		remove, err := dp.AddLink(name, "owner", &nopLink{done: make(chan struct{})})
		if err != nil {
			t.Fatal(err)
		}
		defer remove()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(dp))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "rtcp_dp_name_links" {
			continue
		}
		for _, m := range mf.GetMetric() {
			links[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	// "other" is never counted on its own, "w" and "x" take the two
	// places, and "y" is summed with "other".
	if want := map[string]float64{"w": 1, "x": 1, "other": 2}; !maps.Equal(links, want) {
		t.Errorf("rtcp_dp_name_links: %v, want %v", links, want)
	}
}
