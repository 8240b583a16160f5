package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/seed-a1ce88ea/fleet/internal/browsertest"
)

// BenchmarkDashboardLoad10k loads the dashboard in headless Chromium
// against 10,000 units on 10 machines in a real etcd, through the API as
// fleetd serves it, and reports: the page's load to the units table drawn
// (ms/load, from the start of navigation), the part spent reading the API
// (ms/fetch: machines, units and states, each in one page), the same
// GET /fleet/v1/units from Go alone (ms/api-units), a name filter over the
// 10,000 (ms/filter), the unit rows in the DOM (rows) and the JS heap (MiB).
//
//	go test -run '^$' -bench DashboardLoad10k -benchtime 5x ./ui/
func BenchmarkDashboardLoad10k(b *testing.B) {
	const n = 10000
	c := newCluster(b, 10)
	c.addUnits(n, func(i int) string { return fmt.Sprintf("app-%05d.service", i) })
	p := browsertest.Page{T: b, Ctx: browsertest.New(b), URL: c.url}
	p.Run("token", chromedp.Navigate(c.url+"/ui/"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`sessionStorage.setItem('fleet.token', %q)`, readToken)))
	var load, fetch, filter, rows, heap, apiUnits float64
	b.ResetTimer()
	for range b.N {
		apiUnits += getMillis(b, c.url+"/fleet/v1/units?pageSize=65535")
		p.Run("load", chromedp.Navigate("about:blank"), chromedp.Navigate(c.url+"/ui/#units"), chromedp.WaitVisible("#units"))
		p.Until("10,000 units drawn", `performance.getEntriesByName('fleet-drawn').length > 0`)
		load += evalFloat(p, `performance.getEntriesByName('fleet-drawn')[0].startTime`)
		fetch += evalFloat(p, `performance.getEntriesByName('fleet-fetched')[0].startTime - performance.getEntriesByName('fleet-load-start')[0].startTime`)
		rows += evalFloat(p, `document.querySelectorAll('#units-spacer .row').length`)
		filter += evalFloat(p, `(() => { const t = performance.now(); const e = document.getElementById('f-name');
			e.value = 'app-0999'; e.dispatchEvent(new Event('input')); return performance.now() - t; })()`)
		p.Until("filtered", browsertest.UnitsShown+` === '10 of 10000 units'`)
		heap += evalFloat(p, `performance.memory ? performance.memory.usedJSHeapSize : 0`)
	}
	b.StopTimer()
	N := float64(b.N)
	b.ReportMetric(load/N, "ms/load")
	b.ReportMetric(fetch/N, "ms/fetch")
	b.ReportMetric(apiUnits/N, "ms/api-units")
	b.ReportMetric(filter/N, "ms/filter")
	b.ReportMetric(rows/N, "rows")
	b.ReportMetric(heap/N/(1<<20), "MiB")
	b.ReportMetric(0, "ns/op") // the navigation loop's wall time says nothing
}

func evalFloat(p browsertest.Page, expr string) float64 {
	var f float64
	if _, err := fmt.Sscan(p.Eval(`String(`+expr+`)`), &f); err != nil {
		p.T.Fatalf("%s: %v", expr, err)
	}
	return f
}

// getMillis times one GET of url with the read token, body read whole.
func getMillis(b *testing.B, url string) float64 {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v", url, res.StatusCode, err)
	}
	return float64(time.Since(start).Microseconds()) / 1000
}
