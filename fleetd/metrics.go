package fleetd

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// metricsReadTimeout bounds the etcd reads of one scrape.
const metricsReadTimeout = 5 * time.Second

// metrics is fleetd's Prometheus registry and the collectors it measures
// itself: etcd request latency, API requests, and the cluster's state read
// from etcd at scrape time. It uses its own prometheus.Registry, never the
// global one.
type metrics struct {
	reg         *prometheus.Registry
	etcdLatency *prometheus.HistogramVec
	apiRequests *prometheus.CounterVec
	apiLatency  *prometheus.HistogramVec
	planLatency prometheus.Histogram
	planOps     prometheus.Counter
}

// engineState is what the metrics read of this fleetd's engine.
type engineState interface {
	Leading() bool
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		etcdLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleet_etcd_request_duration_seconds",
			Help:    "Latency of this fleetd's etcd requests, by gRPC method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. 4s
		}, []string{"method"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_api_requests_total",
			Help: "Requests answered by this fleetd's API, by HTTP method and status code.",
		}, []string{"method", "code"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleet_api_request_duration_seconds",
			Help:    "Time to answer API requests (streams included), by HTTP method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
		planLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleet_engine_reconcile_duration_seconds",
			Help:    "Time the engine leader took to decide and write each plan.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 0.1ms .. 3.3s
		}),
		planOps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_engine_placement_writes_total",
			Help: "Placements the engine leader on this fleetd wrote or deleted.",
		}),
	}
	m.reg.MustRegister(m.etcdLatency, m.apiRequests, m.apiLatency, m.planLatency, m.planOps,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// observePlan records one plan written by this fleetd's engine.
func (m *metrics) observePlan(took time.Duration, placementOps int) {
	m.planLatency.Observe(took.Seconds())
	m.planOps.Add(float64(placementOps))
}

// watchCluster adds the collector of the cluster's state (read from etcd at
// each scrape) and of this fleetd's engine (nil when disabled).
func (m *metrics) watchCluster(reg *registry.Registry, eng engineState) {
	m.reg.MustRegister(newClusterCollector(reg, eng))
}

// handler serves the metrics in Prometheus' text format. A failed etcd read
// leaves out the cluster's metrics but serves the others.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// etcdInterceptor times every unary etcd request.
func (m *metrics) etcdInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		m.etcdLatency.WithLabelValues(method).Observe(time.Since(start).Seconds())
		return err
	}
}

// instrument counts and times the requests h answers.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.apiRequests.WithLabelValues(r.Method, strconv.Itoa(sw.code)).Inc()
		m.apiLatency.WithLabelValues(r.Method).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer: a
// streamed answer lifts the server's timeouts through it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes through, for streamed answers.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// clusterCollector reads the cluster's state from etcd at scrape time, so
// every fleetd reports the same cluster-wide numbers without keeping any.
type clusterCollector struct {
	reg *registry.Registry
	eng engineState // nil when this fleetd runs no engine

	machines, units, placements, unitStates, unplaced, leader *prometheus.Desc
}

func newClusterCollector(reg *registry.Registry, eng engineState) *clusterCollector {
	return &clusterCollector{
		reg: reg,
		eng: eng,
		machines: prometheus.NewDesc("fleet_machines",
			"Machines present in the cluster.", nil, nil),
		units: prometheus.NewDesc("fleet_units",
			"Submitted units, by desired state.", []string{"desired_state"}, nil),
		placements: prometheus.NewDesc("fleet_placements",
			"Units placed on machines by the engine, by scheduled state.", []string{"state"}, nil),
		unitStates: prometheus.NewDesc("fleet_unit_states",
			"Units as machines' systemd reports them, by active state.", []string{"active_state"}, nil),
		unplaced: prometheus.NewDesc("fleet_unplaced_units",
			"Units the engine leader could place on no machine.", nil, nil),
		leader: prometheus.NewDesc("fleet_engine_leader",
			"1 if this fleetd's engine leads the cluster, else 0.", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.machines, c.units, c.placements, c.unitStates, c.unplaced, c.leader} {
		ch <- d
	}
}

// Collect reads etcd; a failed read reports that metric invalid and the
// others still come.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsReadTimeout)
	defer cancel()
	if c.eng != nil {
		leading := 0.0
		if c.eng.Leading() {
			leading = 1
		}
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leading)
	}
	if ms, _, err := c.reg.Machines(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.machines, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.machines, prometheus.GaugeValue, float64(len(ms)))
	}
	if us, _, err := c.reg.Units(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.units, err)
	} else {
		counts := map[string]int{string(registry.StateInactive): 0, string(registry.StateLoaded): 0, string(registry.StateLaunched): 0}
		for _, u := range us {
			counts[string(u.DesiredState)]++
		}
		emit(ch, c.units, counts)
	}
	if ps, _, err := c.reg.Placements(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.placements, err)
	} else {
		counts := map[string]int{string(registry.StateLoaded): 0, string(registry.StateLaunched): 0}
		for _, p := range ps {
			counts[string(p.DesiredState)]++
		}
		emit(ch, c.placements, counts)
	}
	if ss, err := c.reg.States(ctx, ""); err != nil {
		ch <- prometheus.NewInvalidMetric(c.unitStates, err)
	} else {
		counts := map[string]int{}
		for _, s := range ss {
			counts[s.ActiveState]++
		}
		emit(ch, c.unitStates, counts)
	}
	if un, _, err := c.reg.Unplaced(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.unplaced, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.unplaced, prometheus.GaugeValue, float64(len(un)))
	}
}

func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, counts map[string]int) {
	for label, n := range counts {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), label)
	}
}
