package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// BenchmarkList times the listings fleetctl list-units and list-unit-files
// make, through the registry client and over HTTP, on a cluster of
// FLEET_BENCH_UNITS units (default 10,000; each its own body, placed and
// reported active) on 100 machines.
//
//	go test ./api/ -run '^$' -bench BenchmarkList -benchtime 3x
func BenchmarkList(b *testing.B) {
	n := 10000
	if v := os.Getenv("FLEET_BENCH_UNITS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FLEET_BENCH_UNITS=%q: %v", v, err)
		}
	}
	e := etcdtest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reg := registry.New(e.Client(b), registry.WithRequestTimeout(time.Minute))
	const machines = 100
	ps := make([]*registry.Presence, machines)
	for i := range ps {
		id := fmt.Sprintf("%032x", i+1)
		p, err := reg.Register(ctx, machine.Machine{ID: id, Hostname: "h" + strconv.Itoa(i)}, 60*time.Second)
		require.NoError(b, err)
		defer p.Close()
		ps[i] = p
	}
	lead, err := reg.Campaign(ctx, "bench", 60*time.Second)
	require.NoError(b, err)
	defer func() { _ = lead.Resign(context.Background()) }()
	_, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(b, err)
	var ops []registry.PlanOp
	states := make([][]registry.UnitState, machines)
	for i := range n {
		name := fmt.Sprintf("u%06d.service", i)
		f, err := unit.ParseString(fmt.Sprintf("[Unit]\nDescription=unit %d\n[Service]\nExecStart=/bin/sleep %d\n", i, i))
		require.NoError(b, err)
		h := f.Hash().String()
		require.NoError(b, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: h, DesiredState: registry.StateLaunched}, f.String(), false))
		m := i % machines
		ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{Machine: ps[m].Machine().ID, Name: name, Hash: h, DesiredState: registry.StateLaunched}})
		states[m] = append(states[m], registry.UnitState{Name: name, Hash: h, LoadState: "loaded", ActiveState: "active", SubState: "running"})
	}
	_, err = reg.ApplyPlan(ctx, lead, ops)
	require.NoError(b, err)
	for i, p := range ps {
		require.NoError(b, p.PublishStates(ctx, states[i]))
	}
	rc := api.NewRegistryClient(reg)
	srv := httptest.NewServer(api.NewServer(rc))
	defer srv.Close()
	hc, err := api.NewHTTPClient(srv.URL, time.Minute)
	require.NoError(b, err)
	for _, c := range []struct {
		name string
		c    api.Client
	}{{"registry", rc}, {"http", hc}} {
		b.Run("units/"+c.name, func(b *testing.B) {
			for b.Loop() {
				us, err := c.c.Units(ctx)
				require.NoError(b, err)
				require.Len(b, us, n)
			}
		})
		if c.name == "http" {
			// fleet v1.0's fleetctl: pages of 100, each token sent back.
			b.Run("units/http-pages-of-100", func(b *testing.B) {
				for b.Loop() {
					got, tok := 0, ""
					for {
						url := srv.URL + "/fleet/v1/units"
						if tok != "" {
							url += "?nextPageToken=" + tok
						}
						resp, err := http.Get(url)
						require.NoError(b, err)
						var p api.UnitPage
						require.NoError(b, json.NewDecoder(resp.Body).Decode(&p))
						resp.Body.Close()
						got += len(p.Units)
						if tok = p.NextPageToken; tok == "" {
							break
						}
					}
					require.Equal(b, n, got)
				}
			})
		}
		b.Run("states/"+c.name, func(b *testing.B) {
			for b.Loop() {
				ss, err := c.c.UnitStates(ctx, api.StateFilter{})
				require.NoError(b, err)
				require.Len(b, ss, n)
			}
		})
	}
}

// BenchmarkSubmit times submitting FLEET_BENCH_UNITS units (default
// 10,000) through the registry client: one CreateUnit per unit, 64 in
// flight (what the HTTP API does per PUT), against CreateUnits, 63 units to
// a transaction, 64 transactions in flight.
//
//	go test ./api/ -run '^$' -bench BenchmarkSubmit -benchtime 1x -cpuprofile /tmp/submit.prof
func BenchmarkSubmit(b *testing.B) {
	n := 10000
	if v := os.Getenv("FLEET_BENCH_UNITS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FLEET_BENCH_UNITS=%q: %v", v, err)
		}
	}
	e := etcdtest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reg := registry.New(e.Client(b), registry.WithRequestTimeout(time.Minute))
	rc := api.NewRegistryClient(reg)
	units := func(run int) []*api.Unit {
		us := make([]*api.Unit, n)
		for i := range us {
			us[i] = &api.Unit{Name: fmt.Sprintf("r%d-u%06d.service", run, i), DesiredState: "launched", Options: []*api.UnitOption{
				{Section: "Unit", Name: "Description", Value: fmt.Sprintf("unit %d", i)},
				{Section: "Service", Name: "ExecStart", Value: fmt.Sprintf("/bin/sleep %d", i)},
			}}
		}
		return us
	}
	run := 0
	parallel := func(items int, f func(i int) error) error {
		work := make(chan int)
		errc := make(chan error, 64)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for i := range work {
					if err := f(i); err != nil {
						errc <- err
						return
					}
				}
			})
		}
		for i := range items {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errc)
		return <-errc
	}
	b.Run("one-per-unit", func(b *testing.B) {
		for b.Loop() {
			run++
			us := units(run)
			require.NoError(b, parallel(len(us), func(i int) error { _, err := rc.CreateUnit(ctx, us[i]); return err }))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
	})
	b.Run("batch", func(b *testing.B) {
		bc := rc.(api.UnitBatcher)
		for b.Loop() {
			run++
			us := units(run)
			require.NoError(b, parallel((len(us)+62)/63, func(i int) error {
				for _, r := range bc.CreateUnits(ctx, us[i*63:min(len(us), i*63+63)]) {
					if r.Err != nil {
						return r.Err
					}
				}
				return nil
			}))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "units/s")
	})
}
