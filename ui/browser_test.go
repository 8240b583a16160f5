package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/browsertest"
)

// TestShellIsStatic: the files load without credentials, hold no cluster
// data, and come with a policy that allows only this origin.
func TestShellIsStatic(t *testing.T) {
	c := newCluster(t, 1)
	c.addUnits(1, func(int) string { return "secret-name.service" })
	for _, f := range []string{"", "app.js", "app.css"} {
		res, err := http.Get(c.url + "/ui/" + f)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, f)
		require.NotContains(t, string(body), "secret-name", f)
		require.Contains(t, res.Header.Get("Content-Security-Policy"), "connect-src 'self'")
		require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	}
	res, err := http.Post(c.url+"/ui/", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "a POST needs admin before it reaches the files")
	res, err = http.Get(c.url + "/fleet/v1/units")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
}

// page drives one browser tab against the cluster's dashboard.
type page struct {
	t   *testing.T
	ctx context.Context
}

func (p page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, actions...), what)
}

// eval returns the value of a JS expression.
func (p page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(p.t, err, expr)
	return s
}

// until waits for a JS expression to become true.
func (p page) until(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond)))
	require.NoError(p.t, err, "%s: %s", what, expr)
}

func (p page) signIn(url, token string) {
	p.t.Helper()
	p.run("sign in", chromedp.Navigate(url+"/ui/"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`),
		chromedp.Navigate(url+"/ui/#units"),
		chromedp.WaitVisible("#login"),
		chromedp.SendKeys("#token", token),
		chromedp.Click("#signin"))
}

// filter sets a filter field as typing or choosing would.
func (p page) filter(id, value string) {
	p.t.Helper()
	p.run("filter "+id, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event('input')); })()`, id, value)))
}

// act clicks an action button and confirms it.
func (p page) act(selector string) {
	p.t.Helper()
	p.run("act "+selector, chromedp.Click(selector), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
}

func unitRow(name string) string { return fmt.Sprintf(`#units-spacer .row[data-unit=%q]`, name) }

func activeCell(name string) string {
	return fmt.Sprintf(`(document.querySelector('%s [data-col=active]')||{}).textContent`, unitRow(name))
}

// TestDashboard against embedded etcd: sign-in, machines and units as the
// API lists them, live updates from the event stream, filters, a read
// token refused with the API's message, and an admin's action applied.
func TestDashboard(t *testing.T) {
	c := newCluster(t, 3)
	c.addUnits(30, func(i int) string { return fmt.Sprintf("web-%02d.service", i) })
	p := page{t, browsertest.New(t)}

	p.run("load without a token", chromedp.Navigate(c.url+"/ui/"), chromedp.WaitVisible("#login"))
	p.signIn(c.url, "wrong")
	p.until("a wrong token is refused", `!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.includes('not recognised')`)

	p.signIn(c.url, readToken)
	p.run("signed in", chromedp.WaitVisible("#units"))
	p.until("30 units listed", `document.querySelector('#unit-shown').textContent === '30 units'`)
	require.Equal(t, "active/running", p.eval(activeCell("web-07.service")))
	browsertest.Screenshot(t, p.ctx, "units")

	t.Run("machines with their unit counts", func(t *testing.T) {
		p := page{t, p.ctx}
		p.run("machines tab", chromedp.Click(`.tab[data-tab=machines]`), chromedp.WaitVisible("#machines"))
		require.Equal(t, "3", p.eval(`String(document.querySelectorAll('#machine-rows tr').length)`))
		id := c.machines[1].Machine().ID
		require.Equal(t, "10.0.0.2 10", p.eval(fmt.Sprintf(`(() => { const r = document.querySelector('#machine-rows tr[data-machine="%s"]'); return r.children[1].textContent + ' ' + r.children[4].textContent })()`, id)))
		require.Contains(t, p.eval(`document.querySelector('#machine-rows').textContent`), "region=eu-west")
		browsertest.Screenshot(t, p.ctx, "machines")
		p.run("units tab", chromedp.Click(`.tab[data-tab=units]`), chromedp.WaitVisible("#units"))
	})

	t.Run("an event updates the row without reload", func(t *testing.T) {
		p := page{t, p.ctx}
		p.run("mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
		c.publish(0, "web-03.service", "failed", "failed")
		p.until("web-03 failed", activeCell("web-03.service")+` === 'failed/failed'`)
		c.addUnits(1, func(int) string { return "new-01.service" })
		p.until("new unit listed", `document.querySelector('#unit-shown').textContent === '31 units'`)
		require.Equal(t, "true", p.eval(`String(window.notReloaded)`))
	})

	t.Run("filters", func(t *testing.T) {
		p := page{t, p.ctx}
		p.filter("f-state", "failed")
		p.until("one failed unit", `document.querySelector('#unit-shown').textContent === '1 of 31 units'`)
		p.filter("f-state", "")
		p.filter("f-name", "web-1")
		p.until("ten web-1x units", `document.querySelector('#unit-shown').textContent === '10 of 31 units'`)
		p.filter("f-name", "")
		p.filter("f-machine", "10.0.0.3")
		p.until("units of machine 3", `document.querySelector('#unit-shown').textContent === '10 of 31 units'`)
		p.filter("f-machine", "")
		p.until("all again", `document.querySelector('#unit-shown').textContent === '31 units'`)
	})

	t.Run("a read token cannot act", func(t *testing.T) {
		p := page{t, p.ctx}
		p.act(unitRow("web-05.service") + ` button[data-action=stop]`)
		p.until("403 shown", `!document.querySelector('#banner').hidden && document.querySelector('#banner-text').textContent.includes('needs role admin; viewer has role read')`)
		browsertest.Screenshot(t, p.ctx, "refused")
		u, err := c.reg.Unit(c.ctx, "web-05.service")
		require.NoError(t, err)
		require.Equal(t, "launched", string(u.DesiredState))
	})

	t.Run("an admin stops and destroys", func(t *testing.T) {
		p := page{t, p.ctx}
		p.run("sign out", chromedp.Click("#signout"), chromedp.WaitVisible("#login"))
		p.signIn(c.url, adminToken)
		p.run("signed in", chromedp.WaitVisible("#units"))
		p.until("listed", `document.querySelector('#unit-shown').textContent === '31 units'`)
		p.act(unitRow("web-05.service") + ` button[data-action=stop]`)
		p.until("stop requested", `document.querySelector('#banner-text').textContent === 'web-05.service: stop requested'`)
		u, err := c.reg.Unit(c.ctx, "web-05.service")
		require.NoError(t, err)
		require.Equal(t, "loaded", string(u.DesiredState))
		p.until("desired state shown", fmt.Sprintf(`document.querySelector('%s').children[1].textContent === 'loaded'`, unitRow("web-05.service")))
		p.act(unitRow("new-01.service") + ` button[data-action=destroy]`)
		p.until("gone from the table", `document.querySelector('#unit-shown').textContent === '30 units'`)
	})

	t.Run("event feed", func(t *testing.T) {
		p := page{t, p.ctx}
		p.run("events tab", chromedp.Click(`.tab[data-tab=events]`), chromedp.WaitVisible("#events"))
		feed := p.eval(`document.querySelector('#event-feed').textContent`)
		require.Contains(t, feed, "unit.destroyed")
		require.Contains(t, feed, "new-01.service")
		browsertest.Screenshot(t, p.ctx, "events")
	})
}
