package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
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

// TestDashboard against embedded etcd: sign-in, machines and units as the
// API lists them, live updates from the event stream, filters, a read
// token refused with the API's message, and an admin's action applied.
func TestDashboard(t *testing.T) {
	c := newCluster(t, 3)
	c.addUnits(30, func(i int) string { return fmt.Sprintf("web-%02d.service", i) })
	p := browsertest.Page{T: t, Ctx: browsertest.New(t), URL: c.url}

	p.Run("load without a token", chromedp.Navigate(c.url+"/ui/"), chromedp.WaitVisible("#login"))
	p.SignIn("wrong")
	p.Until("a wrong token is refused", `!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.includes('not recognised')`)

	p.SignIn(readToken)
	p.Run("signed in", chromedp.WaitVisible("#units"))
	p.Until("30 units listed", browsertest.UnitsShown+` === '30 units'`)
	require.Equal(t, "active/running", p.Eval(browsertest.ActiveCell("web-07.service")))
	browsertest.Screenshot(t, p.Ctx, "units")

	t.Run("machines with their unit counts", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Tab("machines")
		require.Equal(t, "3", p.Eval(`String(document.querySelectorAll('#machine-rows tr').length)`))
		id := c.machines[1].Machine().ID
		require.Equal(t, "10.0.0.2 10", p.Eval(fmt.Sprintf(`(() => { const r = document.querySelector('#machine-rows tr[data-machine="%s"]'); return r.children[1].textContent + ' ' + r.children[4].textContent })()`, id)))
		require.Contains(t, p.Eval(`document.querySelector('#machine-rows').textContent`), "region=eu-west")
		browsertest.Screenshot(t, p.Ctx, "machines")
		p.Tab("units")
	})

	t.Run("optional sections follow the API", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		// Other parts of fleet add these endpoints; the page shows a
		// section or button exactly when the API has the endpoint.
		for sel, path := range map[string]string{
			`.tab[data-tab=rollouts]`:   "/fleet/v1/rollouts",
			`.tab[data-tab=reboots]`:    "/fleet/v1/reboots",
			`button[data-action=drain]`: "/fleet/v1/machines/" + c.machines[0].Machine().ID + "/drain",
		} {
			p.Tab("machines")
			want := apiHas(t, c.url+path)
			p.Until("probed", `document.body.dataset.probed === 'true'`)
			got := p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return String(!!e && !e.hidden); })()`, sel))
			require.Equal(t, fmt.Sprint(want), got, "%s shown iff the API has %s", sel, path)
		}
		p.Tab("units")
	})

	t.Run("an event updates the row without reload", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Run("mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
		c.publish(0, "web-03.service", "failed", "failed")
		p.Until("web-03 failed", browsertest.ActiveCell("web-03.service")+` === 'failed/failed'`)
		c.addUnits(1, func(int) string { return "new-01.service" })
		p.Until("new unit listed", browsertest.UnitsShown+` === '31 units'`)
		require.Equal(t, "true", p.Eval(`String(window.notReloaded)`))
	})

	t.Run("filters", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Filter("f-state", "failed")
		p.Until("one failed unit", browsertest.UnitsShown+` === '1 of 31 units'`)
		p.Filter("f-state", "")
		p.Filter("f-name", "web-1")
		p.Until("ten web-1x units", browsertest.UnitsShown+` === '10 of 31 units'`)
		p.Filter("f-name", "")
		p.Filter("f-machine", "10.0.0.3")
		p.Until("units of machine 3", browsertest.UnitsShown+` === '10 of 31 units'`)
		p.Filter("f-machine", "")
		p.Until("all again", browsertest.UnitsShown+` === '31 units'`)
	})

	t.Run("a read token cannot act", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Act("web-05.service", "stop")
		p.Until("403 shown", `!document.querySelector('#banner').hidden && document.querySelector('#banner-text').textContent.includes('needs role admin; viewer has role read')`)
		browsertest.Screenshot(t, p.Ctx, "refused")
		u, err := c.reg.Unit(c.ctx, "web-05.service")
		require.NoError(t, err)
		require.Equal(t, "launched", string(u.DesiredState))
	})

	t.Run("an admin stops and destroys", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Run("sign out", chromedp.Click("#signout"), chromedp.WaitVisible("#login"))
		p.SignIn(adminToken)
		p.Run("signed in", chromedp.WaitVisible("#units"))
		p.Until("listed", browsertest.UnitsShown+` === '31 units'`)
		p.Act("web-05.service", "stop")
		p.Until("stop requested", `document.querySelector('#banner-text').textContent === 'web-05.service: stop requested'`)
		u, err := c.reg.Unit(c.ctx, "web-05.service")
		require.NoError(t, err)
		require.Equal(t, "loaded", string(u.DesiredState))
		p.Until("desired state shown", fmt.Sprintf(`document.querySelector('%s').children[1].textContent === 'loaded'`, browsertest.UnitRow("web-05.service")))
		p.Act("new-01.service", "destroy")
		p.Until("gone from the table", browsertest.UnitsShown+` === '30 units'`)
	})

	t.Run("event feed", func(t *testing.T) {
		p := browsertest.Page{T: t, Ctx: p.Ctx, URL: c.url}
		p.Tab("events")
		feed := p.Eval(`document.querySelector('#event-feed').textContent`)
		require.Contains(t, feed, "unit.destroyed")
		require.Contains(t, feed, "new-01.service")
		browsertest.Screenshot(t, p.Ctx, "events")
	})
}

// apiHas reports whether the API answers GET url with anything but its
// catch-all "no such API resource".
func apiHas(t *testing.T, url string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return !(res.StatusCode == http.StatusNotFound && strings.Contains(string(body), "no such API resource"))
}

// TestOptionalSections stands in for the optional endpoints (drain,
// rollouts, reboots): the page hides a section whose endpoint is absent,
// renders an answer whose shape it does not know, and a confirmed Drain
// reaches the API.
func TestOptionalSections(t *testing.T) {
	drained := make(chan string, 1)
	c := newCluster(t, 2, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /fleet/v1/machines/{id}/drain", func(w http.ResponseWriter, r *http.Request) {
			drained <- r.PathValue("id")
			w.WriteHeader(http.StatusNoContent)
		})
		// As api.NewServer answers other methods of its routes.
		mux.HandleFunc("/fleet/v1/machines/{id}/drain", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":{"code":405,"message":"use POST"}}`, http.StatusMethodNotAllowed)
		})
		// A fleetd without coordinated reboots answers as the API does for
		// any path it does not know, so the page must hide the tab.
		mux.HandleFunc("GET /fleet/v1/reboots", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":404,"message":"no such API resource: /fleet/v1/reboots"}}`)
		})
		mux.HandleFunc("GET /fleet/v1/rollouts", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"rollouts":[{"unit":"web.service","state":"rolling","done":2,"total":3}]}`)
		})
	})
	p := browsertest.Page{T: t, Ctx: browsertest.New(t), URL: c.url}
	p.SignIn(adminToken)
	p.Run("signed in", chromedp.WaitVisible("#units"))
	p.Until("probed", `document.body.dataset.probed === 'true'`)
	require.Equal(t, "true", p.Eval(`String(document.querySelector('.tab[data-tab=reboots]').hidden)`), "no reboots endpoint here")

	p.Tab("rollouts")
	p.Until("rollouts drawn", `document.querySelector('#rollouts-body td') !== null`)
	require.Equal(t, "unit state done total web.service rolling 2 3", p.Eval(
		`[...document.querySelectorAll('#rollouts-body th, #rollouts-body td')].map((e) => e.textContent).join(' ')`))
	browsertest.Screenshot(t, p.Ctx, "rollouts")

	p.Tab("machines")
	id := c.machines[1].Machine().ID
	p.Run("drain", chromedp.Click(fmt.Sprintf(`#machine-rows tr[data-machine=%q] button[data-action=drain]`, id)),
		chromedp.WaitVisible("#confirm-ok"))
	require.Contains(t, p.Eval(`document.querySelector('#confirm-text').textContent`), id)
	p.Run("confirm", chromedp.Click("#confirm-ok"))
	require.Equal(t, id, <-drained)
	p.Until("confirmed", `document.querySelector('#banner-text').textContent.startsWith('drain of ')`)
}

// TestWithoutToken: where the API asks for no token (a listener without
// authentication here; a client certificate the browser presents takes
// the same path), the page goes straight to the cluster, with no sign-in
// form and no sign-out button.
func TestWithoutToken(t *testing.T) {
	c := newCluster(t, 1)
	c.addUnits(2, func(i int) string { return fmt.Sprintf("open-%d.service", i) })
	srv := httptest.NewServer(api.RefuseCrossOrigin(api.Authorize(nil, c.mux)))
	t.Cleanup(srv.Close)
	p := browsertest.Page{T: t, Ctx: browsertest.New(t), URL: srv.URL}
	p.Run("open", chromedp.Navigate(srv.URL+"/ui/"), chromedp.WaitVisible("#units"))
	p.Until("listed", browsertest.UnitsShown+` === '2 units'`)
	require.Equal(t, "true true", p.Eval(`document.querySelector('#login').hidden + ' ' + document.querySelector('#signout').hidden`))
}

// TestRolloutAndRebootViews: the rollouts and reboots tabs draw fleetd's
// own answers (a rollout started through the API, a reboot asked for) as
// readable rows, not as JSON.
func TestRolloutAndRebootViews(t *testing.T) {
	c := newCluster(t, 2)
	c.addUnits(2, func(i int) string { return fmt.Sprintf("web@%d.service", i+1) })
	st, err := c.rc.(api.Rollouts).StartRollout(c.ctx, api.RolloutRequest{Target: "web@*", Options: []*api.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/bin/sleep 5000"},
	}})
	require.NoError(t, err)
	_, err = c.rc.(api.Rollouts).ControlRollout(c.ctx, "web@*", api.RolloutPause)
	require.NoError(t, err)
	victim := c.machines[1].Machine().ID
	require.NoError(t, c.rc.(api.Rebooter).RequestReboot(c.ctx, victim))

	p := browsertest.Page{T: t, Ctx: browsertest.New(t), URL: c.url}
	p.SignIn(adminToken)
	p.Run("signed in", chromedp.WaitVisible("#units"))
	p.Until("probed", `document.body.dataset.probed === 'true'`)

	cells := func(sel string) string {
		return p.Eval(`[...document.querySelectorAll('` + sel + `')].map((e) => e.textContent).join(' | ')`)
	}
	p.Tab("rollouts")
	p.Until("rollouts drawn", `document.querySelector('#rollouts-body td') !== null`)
	require.Equal(t, "rollout | phase | healthy | to | started | steps | message", cells("#rollouts-body th"))
	row := strings.Split(cells("#rollouts-body td"), " | ")
	require.Len(t, row, 7)
	require.Equal(t, []string{"web@*.service", "running (paused)", "0/2", st.To[:7]}, row[:4])
	require.Equal(t, "web@1.service pending, web@2.service pending", row[5])
	require.NotContains(t, cells("#rollouts-body td"), "{", "no JSON in the cells")
	browsertest.Screenshot(t, p.Ctx, "rollouts-real")

	p.Tab("reboots")
	p.Until("reboots drawn", `document.querySelector('#reboots-body h3') !== null`)
	require.Equal(t, "no coordinator has started", p.Eval(`document.querySelector('#reboots-body p').textContent`))
	require.Equal(t, "rebooting (slots held) | waiting for a slot | asked (fleetctl reboot) | machines", cells("#reboots-body h3"))
	require.Contains(t, cells("#reboots-body td"), victim[:8], "the asked reboot is listed by machine")
	require.NotContains(t, cells("#reboots-body td"), "{")
}
