package fleetd

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// metricsReadTimeout bounds the etcd reads of one scrape.
const metricsReadTimeout = 5 * time.Second

// engineCountsTimeout bounds the wait for the engine leader's loop to tally
// its model; a loop busy longer (reading the cluster at the start of a term,
// writing a large plan) costs that scrape the by-state gauges.
const engineCountsTimeout = time.Second

// metrics is fleetd's Prometheus registry and the collectors it measures
// itself: etcd request latency, API requests, and the cluster's state (see
// clusterCollector). It uses its own prometheus.Registry, never the
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
	Counts(ctx context.Context) (engine.Counts, bool)
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

// watchCluster adds the collector of the cluster's state, of this fleetd's
// engine (nil when disabled) and of machine machineID, this fleetd's.
func (m *metrics) watchCluster(reg *registry.Registry, eng engineState, machineID string) {
	m.reg.MustRegister(newClusterCollector(reg, eng, machineID))
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

// clusterCollector reports the cluster's state without reading the whole
// cluster at each scrape of each fleetd, which at 100,000 units would cost
// every fleetd a full read per scrape:
//
//   - The engine leader reports everything from its model, in memory:
//     machines, units by desired state, placements by state, unplaced units.
//   - Any other fleetd (or the leader while its loop is busy) reports only
//     the figures a count-only read gives exactly: machines and unplaced
//     units. Units and placements by state come from the leader alone, so
//     query them with max(), or where fleet_engine_leader == 1.
//   - Unit states are per machine: each fleetd reports its own machine's
//     (one machine's keys); their sum over fleetds is the cluster's.
type clusterCollector struct {
	reg       *registry.Registry
	eng       engineState // nil when this fleetd runs no engine
	machineID string

	machines, units, placements, unitStates, unplaced, leader *prometheus.Desc
}

func newClusterCollector(reg *registry.Registry, eng engineState, machineID string) *clusterCollector {
	return &clusterCollector{
		reg:       reg,
		eng:       eng,
		machineID: machineID,
		machines: prometheus.NewDesc("fleet_machines",
			"Machines present in the cluster.", nil, nil),
		units: prometheus.NewDesc("fleet_units",
			"Submitted units, by desired state (reported by the engine leader only).", []string{"desired_state"}, nil),
		placements: prometheus.NewDesc("fleet_placements",
			"Units placed on machines by the engine, by scheduled state (reported by the engine leader only).", []string{"state"}, nil),
		unitStates: prometheus.NewDesc("fleet_machine_unit_states",
			"Units on this fleetd's machine as its systemd reports them, by active state; sum over fleetds for the cluster.", []string{"active_state"}, nil),
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

// Collect reports from the leader's model or count-only reads; a failed
// read reports that metric invalid and the others still come.
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
	if !c.collectModel(ctx, ch) {
		if t, err := c.reg.Tally(ctx); err != nil {
			ch <- prometheus.NewInvalidMetric(c.machines, err)
			ch <- prometheus.NewInvalidMetric(c.unplaced, err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.machines, prometheus.GaugeValue, float64(t.Machines))
			ch <- prometheus.MustNewConstMetric(c.unplaced, prometheus.GaugeValue, float64(t.Unplaced))
		}
	}
	if ss, err := c.reg.States(ctx, c.machineID); err != nil {
		ch <- prometheus.NewInvalidMetric(c.unitStates, err)
	} else {
		counts := map[string]int{}
		for _, s := range ss {
			counts[s.ActiveState]++
		}
		emit(ch, c.unitStates, counts)
	}
}

// collectModel reports the engine leader's counts; false when this fleetd
// does not lead or its engine did not answer in time.
func (c *clusterCollector) collectModel(ctx context.Context, ch chan<- prometheus.Metric) bool {
	if c.eng == nil {
		return false
	}
	ectx, cancel := context.WithTimeout(ctx, engineCountsTimeout)
	defer cancel()
	n, ok := c.eng.Counts(ectx)
	if !ok {
		return false
	}
	ch <- prometheus.MustNewConstMetric(c.machines, prometheus.GaugeValue, float64(n.Machines))
	ch <- prometheus.MustNewConstMetric(c.unplaced, prometheus.GaugeValue, float64(n.Unplaced))
	emit(ch, c.units, n.Units)
	emit(ch, c.placements, n.Placements)
	return true
}

func emit[K ~string](ch chan<- prometheus.Metric, d *prometheus.Desc, counts map[K]int) {
	for label, n := range counts {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), string(label))
	}
}
