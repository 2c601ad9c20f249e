package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// metrics serves Prometheus metrics. Kernel counters are read at scrape
// time; the engine's counters, which only the main loop may touch, are
// copied here on every housekeeping tick.
type metrics struct {
	srv      *http.Server
	issued   *prometheus.CounterVec
	latency  prometheus.Histogram
	killedC  prometheus.Counter
	pressure prometheus.Gauge
	slotConn *prometheus.GaugeVec
	evictedC prometheus.Counter
	escal    prometheus.Counter
	goodG    prometheus.Gauge
	mu       sync.Mutex
	counters logwatch.Counters
	follower interface {
		Stats() logwatch.FollowStats
	}
	cs crowdsecCollector
}

// newMetrics serves the metrics on listen ("" serves none). p is the
// priority steering program, nil when it is off.
func newMetrics(listen string, g *datapath.Guard, p *datapath.Priority, log *slog.Logger) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xdpguard_bans_issued_total",
			Help: "Bans issued by this daemon, by origin (kernel SYN-rate auto-bans, log decisions)."}, []string{"origin"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xdpguard_decision_latency_seconds",
			Help:    "Time from a log line being read to its ban being in the kernel map.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		killedC: prometheus.NewCounter(prometheus.CounterOpts{Name: "xdpguard_connections_destroyed_total",
			Help: "Established connections of banned sources destroyed to free login slots."}),
		pressure: prometheus.NewGauge(prometheus.GaugeOpts{Name: "xdpguard_slot_pressure",
			Help: "1 while the login slots are under pressure (slot_holders.pressure), else 0."}),
		slotConn: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xdpguard_slot_connections",
			Help: "Connections to the protected ports waiting in accept queues, and accepted but silent for slot_holders.pressure.idle, at the last look."},
			[]string{"state"}),
		evictedC: prometheus.NewCounter(prometheus.CounterOpts{Name: "xdpguard_connections_evicted_total",
			Help: "Pre-authentication connections of sources that never logged in, destroyed to make room while the login slots ran out."}),
		escal: prometheus.NewCounter(prometheus.CounterOpts{Name: "xdpguard_ipv6_escalations_total",
			Help: "IPv6 prefixes banned whole because several sources inside them were banned (ipv6_escalation)."}),
		goodG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "xdpguard_known_good_sources",
			Help: "Sources that logged in within known_good.retention (masked like bans)."}),
	}
	if listen == "" {
		return m, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.issued, m.latency, m.killedC, m.pressure, m.slotConn, m.evictedC, m.escal, m.goodG, &collector{g: g, p: p, m: m, log: log}, &m.cs)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	warnExposed(ln.Addr(), log)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String())
	return m, nil
}

func (m *metrics) banned(o datapath.Origin, latency time.Duration) {
	m.issued.WithLabelValues(o.String()).Inc()
	if latency > 0 {
		m.latency.Observe(latency.Seconds())
	}
}

func (m *metrics) killed(n int) { m.killedC.Add(float64(n)) }

func (m *metrics) evicted(n int) { m.evictedC.Add(float64(n)) }

func (m *metrics) escalated() { m.escal.Inc() }

func (m *metrics) knownGood(n int) { m.goodG.Set(float64(n)) }

func (m *metrics) slots(pressure bool, waiting, silent int) {
	v := 0.0
	if pressure {
		v = 1
	}
	m.pressure.Set(v)
	m.slotConn.WithLabelValues("waiting").Set(float64(waiting))
	m.slotConn.WithLabelValues("silent").Set(float64(silent))
}

func (m *metrics) update(c logwatch.Counters) {
	m.mu.Lock()
	m.counters = c
	m.mu.Unlock()
}

func (m *metrics) setFollower(f interface{ Stats() logwatch.FollowStats }) {
	m.mu.Lock()
	m.follower = f
	m.mu.Unlock()
}

func (m *metrics) close() {
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m.srv.Shutdown(ctx)
	}
}

var (
	descPackets = prometheus.NewDesc("xdpguard_packets_total", "Packets seen by the XDP program, by verdict.", []string{"verdict"}, nil)
	descKernel  = prometheus.NewDesc("xdpguard_kernel_events_total", "Other counters of the kernel programs (priority_*: SYNs handed to a tier's listener: known-good, fresh, or failed).", []string{"event"}, nil)
	descBans    = prometheus.NewDesc("xdpguard_active_bans", "Bans in force, by origin.", []string{"origin"}, nil)
	descLines   = prometheus.NewDesc("xdpguard_log_lines_total", "Log lines read, matched and missed.", []string{"result"}, nil)
	descRules   = prometheus.NewDesc("xdpguard_log_matches_total", "Log lines matched, by rule and event kind.", []string{"rule", "event"}, nil)
	descFollow  = prometheus.NewDesc("xdpguard_log_follow_total", "Log follower counters.", []string{"counter"}, nil)
)

type collector struct {
	g   *datapath.Guard
	p   *datapath.Priority
	m   *metrics
	log *slog.Logger
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descKernel, descBans, descLines, descRules, descFollow} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label...)
	}
	if st, err := c.g.Stats(); err == nil {
		counter(descPackets, st.Passed, "pass")
		counter(descPackets, st.DroppedBan, "drop_ban")
		counter(descPackets, st.DroppedCIDR, "drop_cidr")
		counter(descPackets, st.WouldDropBan, "would_drop_ban")
		counter(descPackets, st.WouldDropCIDR, "would_drop_cidr")
		counter(descKernel, st.SYNs, "syn")
		counter(descKernel, st.AutoBans, "auto_ban")
		counter(descKernel, st.Malformed, "malformed")
		counter(descKernel, st.Allowed, "allowed")
		counter(descKernel, st.EventsLost, "event_lost")
		counter(descKernel, st.BanTableFull, "ban_table_full")
		counter(descKernel, st.BanDeferred, "ban_deferred")
	} else {
		c.log.Warn("metrics: read kernel counters", "error", err)
	}
	if c.p != nil {
		if st, err := c.p.Stats(); err == nil {
			counter(descKernel, st.Steered, "priority_steered")
			counter(descKernel, st.Fresh, "priority_fresh")
			counter(descKernel, st.Failed, "priority_failed")
			counter(descKernel, st.Refused, "priority_refused")
			counter(descKernel, st.Late, "priority_late")
			counter(descKernel, st.FreshFull, "priority_fresh_full")
		}
	}
	if bans, err := c.g.Bans(); err == nil {
		by := map[string]float64{"kernel": 0, "log": 0, "manual": 0, "crowdsec": 0}
		for _, b := range bans {
			by[b.Origin.String()]++
		}
		for o, n := range by {
			ch <- prometheus.MustNewConstMetric(descBans, prometheus.GaugeValue, n, o)
		}
	}
	c.m.mu.Lock()
	lw, f := c.m.counters, c.m.follower
	c.m.mu.Unlock()
	counter(descLines, lw.Lines, "read")
	var matched uint64
	for _, r := range lw.Matched {
		matched += r.Lines
		counter(descRules, r.Lines, r.Rule, r.Kind.String())
	}
	counter(descLines, matched, "matched")
	counter(descLines, lw.Missed, "missed")
	if f != nil {
		fs := f.Stats()
		counter(descFollow, fs.Capped, "capped")
		counter(descFollow, fs.Errors, "errors")
		counter(descFollow, fs.Restarts, "restarts")
	}
}
