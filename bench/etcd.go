package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdRole runs one real etcd member (etcd's own server code, embedded in
// this binary) as a process of its own.
type etcdRole struct {
	Dir        string
	ClientURL  string
	PeerURL    string
	MetricsURL string
	// NoFsync skips fsync (etcd's --unsafe-no-fsync). Off by default: the
	// figures are for an etcd that keeps its promises.
	NoFsync bool
}

func (r etcdRole) run(ctx context.Context) error {
	ec := embed.NewConfig()
	ec.Dir = r.Dir
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	parse := func(s string) []url.URL {
		u, err := url.Parse(s)
		if err != nil {
			panic(err) // built by the parent from a port number
		}
		return []url.URL{*u}
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = parse(r.ClientURL), parse(r.ClientURL)
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = parse(r.PeerURL), parse(r.PeerURL)
	ec.ListenMetricsUrls = parse(r.MetricsURL)
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.UnsafeNoFsync = r.NoFsync
	// 100,000 units with their bodies, schedules, states and history fit
	// well within etcd's default 2 GiB quota; 8 GiB leaves room for
	// repeated runs on one data directory.
	ec.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(time.Minute):
		return fmt.Errorf("etcd not ready after 1m")
	}
	sayReady()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return err
	}
}

// etcdMetrics is what the benchmark reads from etcd's Prometheus metrics.
type etcdMetrics struct {
	// Unary is the number of unary requests etcd handled, by method
	// (Range, Txn, Put, DeleteRange, LeaseGrant, ...).
	Unary map[string]float64
	// StreamMsgs is the number of messages received on streams, by
	// method (Watch, LeaseKeepAlive).
	StreamMsgs map[string]float64
	// Fsyncs and FsyncSeconds count etcd's WAL fsyncs and their total time.
	Fsyncs, FsyncSeconds float64
}

func (m etcdMetrics) unaryTotal() float64 {
	t := 0.0
	for _, v := range m.Unary {
		t += v
	}
	return t
}

// sub returns m - o.
func (m etcdMetrics) sub(o etcdMetrics) etcdMetrics {
	d := etcdMetrics{Unary: map[string]float64{}, StreamMsgs: map[string]float64{}}
	for k, v := range m.Unary {
		d.Unary[k] = v - o.Unary[k]
	}
	for k, v := range m.StreamMsgs {
		d.StreamMsgs[k] = v - o.StreamMsgs[k]
	}
	d.Fsyncs, d.FsyncSeconds = m.Fsyncs-o.Fsyncs, m.FsyncSeconds-o.FsyncSeconds
	return d
}

// scrapeEtcd reads the gRPC server counters from etcd's /metrics.
func scrapeEtcd(ctx context.Context, metricsURL string) (etcdMetrics, error) {
	m := etcdMetrics{Unary: map[string]float64{}, StreamMsgs: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("scrape etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var into map[string]float64
		switch {
		case strings.HasPrefix(line, "etcd_disk_wal_fsync_duration_seconds_count "):
			m.Fsyncs, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
			continue
		case strings.HasPrefix(line, "etcd_disk_wal_fsync_duration_seconds_sum "):
			m.FsyncSeconds, _ = strconv.ParseFloat(strings.Fields(line)[1], 64)
			continue
		case strings.HasPrefix(line, "grpc_server_handled_total{") && strings.Contains(line, `grpc_type="unary"`):
			into = m.Unary
		case strings.HasPrefix(line, "grpc_server_msg_received_total{") && !strings.Contains(line, `grpc_type="unary"`):
			into = m.StreamMsgs
		default:
			continue
		}
		method := label(line, "grpc_method")
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		into[method] += v
	}
	return m, sc.Err()
}

// label returns the value of label name in a Prometheus text line.
func label(line, name string) string {
	_, rest, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
