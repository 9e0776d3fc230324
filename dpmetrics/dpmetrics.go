// Package dpmetrics serves a DiscoverPoint's Stats to Prometheus.
//
// It is a prometheus.Collector over DiscoverPoint.Stats, so that package
// rtcp itself does not depend on Prometheus, and nothing is registered
// globally: a program that embeds a DP registers the Collector with a
// registry of its own, or serves Handler.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(dpmetrics.NewCollector(dp))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics, all prefixed rtcp_dp_:
//
//	connections            gauge    connections open (links, clients, handshakes)
//	servers                gauge    names with at least one link
//	links                  gauge    server links up
//	sessions               gauge    client sessions being opened or relayed
//	sessions_total         counter  sessions relayed
//	bytes_total{direction} counter  bytes relayed, direction "to_server" or "to_client"
//	refused_total{reason}  counter  refusals, by rtcp.RefusalReasons (limit_sessions and
//	                                 limit_session_rate: the Limits of the DP's Policy)
//	paced_seconds_total    counter  time sessions waited for the Policy's bandwidth limits
//	direct_brokered_total  counter  sessions brokered for a direct path (docs/direct.md)
//	direct_sessions_total{path}  counter  of those, path "moved" (both directions moved,
//	                                 counted at the move), "partly" (ended with one
//	                                 direction moved) or "relayed" (ended with neither)
//	direct_bytes_total     counter  bytes the sides say they wrote on direct connections
//	                                 (reported at each side's Close; not carried by the DP)
//
// and, for each name that the DP counts on its own (at most its
// MaxNameStats, 1000 by default), the same by name; the other names are
// summed under name="other" (a name spelt "other" is always among them,
// as is a name that is not valid UTF-8):
//
//	name_links{name}                   gauge    the name's links in the DP's table
//	name_sessions{name}                gauge    sessions being opened or relayed
//	name_sessions_total{name}          counter  sessions relayed
//	name_bytes_total{name,direction}   counter  bytes relayed, by direction
//	name_refused_total{name,reason}    counter  refusals, only reasons that happened
//
// That is at most 5 series a name, and one a reason that happened, so
// with the default bound some 5000 series and the refusals.
//
// and those of a BudgetCollector, of the rtcp.ConnBudget over the doors:
//
//	conn_budget                 gauge    the most connections all doors hold at once
//	door_connections{door}      gauge    connections open at the door
//	door_part{door}             gauge    connections guaranteed to the door
//	door_refused_total{door}    counter  connections the door refused, over its cap or the budget
package dpmetrics

import (
	"maps"
	"net/http"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"rtcp"
)

// Collector collects a DiscoverPoint's Stats: one snapshot per scrape.
type Collector struct {
	dp *rtcp.DiscoverPoint

	conns, servers, links, sessions *prometheus.Desc
	sessionsTotal, bytes, refused   *prometheus.Desc
	paced                           *prometheus.Desc
	direct, directPath, directBytes *prometheus.Desc

	nameLinks, nameSessions, nameSessionsTotal, nameBytes, nameRefused *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of dp.
func NewCollector(dp *rtcp.DiscoverPoint) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("rtcp_dp_"+name, help, labels, nil)
	}
	return &Collector{
		dp:            dp,
		conns:         d("connections", "Connections open: server links, clients, handshakes under way."),
		servers:       d("servers", "Names with at least one server link."),
		links:         d("links", "Server links up."),
		sessions:      d("sessions", "Client sessions being opened or relayed."),
		sessionsTotal: d("sessions_total", "Client sessions relayed since the DP started."),
		bytes:         d("bytes_total", "Bytes relayed, by direction (to_server, to_client).", "direction"),
		refused:       d("refused_total", "Peers and sessions refused, by reason.", "reason"),
		paced:         d("paced_seconds_total", "Time sessions waited for the bandwidth limits of the DP's policy, summed over sessions and directions."),
		direct:        d("direct_brokered_total", "Sessions brokered for a direct path: each starts on the relay and may move to the direct path."),
		directBytes:   d("direct_bytes_total", "Bytes the sides of brokered sessions say they wrote on their direct connections, which the DP did not carry: reported by each side when it closes the session."),
		directPath:    d("direct_sessions_total", "Sessions brokered for a direct path, by path: moved (both directions moved to the direct path, counted at the move), partly (ended with one direction moved, the other on the relay), relayed (ended with neither moved).", "path"),

		nameLinks:         d("name_links", "Links of the name in the DP's table.", "name"),
		nameSessions:      d("name_sessions", "Client sessions of the name being opened or relayed.", "name"),
		nameSessionsTotal: d("name_sessions_total", "Client sessions of the name relayed.", "name"),
		nameBytes:         d("name_bytes_total", "Bytes relayed for the name, by direction (to_server, to_client).", "name", "direction"),
		nameRefused:       d("name_refused_total", "Clients and servers of the name refused, by reason.", "name", "reason"),
	}
}

// Describe sends the descriptions of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.servers, c.links, c.sessions, c.sessionsTotal, c.bytes, c.refused, c.paced, c.direct, c.directPath, c.directBytes,
		c.nameLinks, c.nameSessions, c.nameSessionsTotal, c.nameBytes, c.nameRefused} {
		ch <- d
	}
}

// Collect takes a snapshot of the DP's Status and sends it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.dp.Status()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.conns, st.Conns)
	gauge(c.servers, st.Servers)
	gauge(c.links, st.Links)
	gauge(c.sessions, st.Sessions)
	counter(c.sessionsTotal, st.SessionsTotal)
	counter(c.bytes, st.BytesToServers, "to_server")
	counter(c.bytes, st.BytesToClients, "to_client")
	for _, reason := range rtcp.RefusalReasons {
		counter(c.refused, st.Refused[reason], reason)
	}
	ch <- prometheus.MustNewConstMetric(c.paced, prometheus.CounterValue, st.PacedSeconds)
	counter(c.direct, st.DirectBrokered)
	counter(c.directPath, st.DirectMoved, "moved")
	counter(c.directPath, st.DirectPartly, "partly")
	counter(c.directPath, st.DirectRelayed, "relayed")
	counter(c.directBytes, st.DirectBytes)
	c.collectNames(ch, st)
}

// otherName labels the names summed together.
const otherName = "other"

// collectNames sends the metrics by name.
func (c *Collector) collectNames(ch chan<- prometheus.Metric, st rtcp.Status) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	name := func(n rtcp.NameCounts, links int, label string) {
		send(c.nameLinks, prometheus.GaugeValue, float64(links), label)
		send(c.nameSessions, prometheus.GaugeValue, float64(n.Sessions), label)
		send(c.nameSessionsTotal, prometheus.CounterValue, float64(n.SessionsTotal), label)
		send(c.nameBytes, prometheus.CounterValue, float64(n.BytesToServer), label, "to_server")
		send(c.nameBytes, prometheus.CounterValue, float64(n.BytesToClient), label, "to_client")
		for reason, v := range n.Refused {
			send(c.nameRefused, prometheus.CounterValue, float64(v), label, reason)
		}
	}
	other, otherLinks := st.Other, 0
	other.Refused = maps.Clone(other.Refused)
	if other.Refused == nil {
		other.Refused = make(map[string]uint64)
	}
	for _, ns := range st.Names {
		// A label must be UTF-8 (MustNewConstMetric would panic), and
		// each name's series its own: any other name is summed.
		if !ns.Counted || ns.Name == otherName || !utf8.ValidString(ns.Name) {
			otherLinks += len(ns.Links)
			if ns.Counted {
				other.Sessions += ns.Sessions
				other.SessionsTotal += ns.SessionsTotal
				other.BytesToServer += ns.BytesToServer
				other.BytesToClient += ns.BytesToClient
				for reason, v := range ns.Refused {
					other.Refused[reason] += v
				}
			}
			continue
		}
		name(ns.NameCounts, len(ns.Links), ns.Name)
	}
	name(other, otherLinks, otherName)
}

// BudgetCollector collects a ConnBudget's Stats: one snapshot per scrape.
type BudgetCollector struct {
	b *rtcp.ConnBudget

	max, open, part, refused *prometheus.Desc
}

var _ prometheus.Collector = (*BudgetCollector)(nil)

// NewBudgetCollector returns a BudgetCollector of b.
func NewBudgetCollector(b *rtcp.ConnBudget) *BudgetCollector {
	return &BudgetCollector{
		b:       b,
		max:     prometheus.NewDesc("rtcp_dp_conn_budget", "The most connections all doors hold at once.", nil, nil),
		open:    prometheus.NewDesc("rtcp_dp_door_connections", "Connections open at the door.", []string{"door"}, nil),
		part:    prometheus.NewDesc("rtcp_dp_door_part", "Connections guaranteed to the door.", []string{"door"}, nil),
		refused: prometheus.NewDesc("rtcp_dp_door_refused_total", "Connections the door refused, over its cap or the budget.", []string{"door"}, nil),
	}
}

// Describe sends the descriptions of every metric.
func (c *BudgetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.max, c.open, c.part, c.refused} {
		ch <- d
	}
}

// Collect takes a snapshot of the budget's Stats and sends it.
func (c *BudgetCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(st.Max))
	for _, d := range st.Doors {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(d.Open), d.Name)
		ch <- prometheus.MustNewConstMetric(c.part, prometheus.GaugeValue, float64(d.Part), d.Name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(d.Refused), d.Name)
	}
}

// Handler returns an http.Handler that serves dp's metrics, those of the
// collectors more (a BudgetCollector, say), and the Go runtime's and the
// process's, in Prometheus's text format.
func Handler(dp *rtcp.DiscoverPoint, more ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(dp),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(more...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
