// Command apiserve serves fleet's HTTP API (api.NewServer over
// api.NewRegistryClient, as fleetd does) on -listen over the etcd at
// -etcd, and nothing else: BenchmarkListFleetctl (api/list_bench_test.go)
// times fleetctl binaries against it, this code's and an older tree's
// (copy this file into that tree and build it there).
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func main() {
	endpoints := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoints, comma-separated")
	listen := flag.String("listen", "127.0.0.1:49153", "address to serve the API on")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		log.Fatalf("etcd client: %v", err)
	}
	srv := &http.Server{Addr: *listen, Handler: api.NewServer(api.NewRegistryClient(registry.New(cli, registry.WithRequestTimeout(time.Minute)))), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
