package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Option configures New.
type Option func(*[]chromedp.ExecAllocatorOption)

// WithInsecureTLS makes the browser accept any server certificate, for a
// test cluster whose CA the browser's store does not hold. The test then
// checks the page, not the TLS set-up (fleetctl's tests do that).
func WithInsecureTLS() Option {
	return func(o *[]chromedp.ExecAllocatorOption) {
		*o = append(*o, chromedp.IgnoreCertErrors)
	}
}

// Browser finds chromium: $FLEET_CHROMIUM, else chromium on $PATH.
func Browser(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("FLEET_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("chromium not found: the dashboard's browser tests need it (make deps installs Debian's chromium package, or set FLEET_CHROMIUM)")
	}
	tb.Skip("chromium not found (apt-get install chromium, or make deps); the dashboard's browser tests are skipped")
	return ""
}

// New starts a headless Chromium for the test and returns a chromedp
// context of its first tab; it is closed when the test ends. Every action
// of the test should use a context derived from it with a timeout.
func New(tb testing.TB, opts ...Option) context.Context {
	tb.Helper()
	exe := Browser(tb)
	alloc := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		// Tests run as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.WindowSize(1400, 900),
		chromedp.UserDataDir(tb.TempDir()),
	)
	for _, o := range opts {
		o(&alloc)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), alloc...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no timeout
		tb.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// ScreenshotDir is where tests write screenshots: $FLEET_UI_SCREENSHOTS
// (made if missing), else a temporary directory removed after the test.
func ScreenshotDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("FLEET_UI_SCREENSHOTS")
	if dir == "" {
		return tb.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("screenshots: %v", err)
	}
	return dir
}

// Screenshot writes a PNG of the page in ctx's tab to ScreenshotDir as
// name.png and logs its path.
func Screenshot(tb testing.TB, ctx context.Context, name string) {
	tb.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(ScreenshotDir(tb), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.Fatalf("screenshot %s: %v", name, err)
	}
	tb.Logf("screenshot: %s", path)
}

// Page drives one tab of the dashboard for a test: actions fail the test,
// each bounded by 20 s so that a page that never gets there fails instead of
// hanging.
type Page struct {
	T   testing.TB
	Ctx context.Context
	// URL is the root of the fleetd serving the dashboard
	// (https://10.0.0.2:49153), without a trailing slash.
	URL string
}

// stepTimeout bounds one step of a Page.
const stepTimeout = 20 * time.Second

// Run runs actions in the tab.
func (p Page) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.T.Fatalf("%s: %v", what, err)
	}
}

// Eval returns the string value of a JavaScript expression.
func (p Page) Eval(expr string) string {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.T.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// Until waits for a JavaScript expression to become truthy.
func (p Page) Until(what, expr string) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		p.T.Fatalf("%s (waiting for %s): %v", what, expr, err)
	}
}

// SignIn opens the dashboard with nothing in sessionStorage and submits
// token on its sign-in form; the caller waits for what should follow.
func (p Page) SignIn(token string) {
	p.T.Helper()
	p.Run("sign in", chromedp.Navigate(p.URL+"/ui/"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`),
		// Away first: from /ui/ to /ui/#units alone would not load the
		// page again.
		chromedp.Navigate("about:blank"),
		chromedp.Navigate(p.URL+"/ui/#units"),
		chromedp.WaitVisible("#login"),
		chromedp.SendKeys("#token", token),
		chromedp.Click("#signin"))
}

// Tab shows one of the dashboard's views (machines, units, events, ...).
func (p Page) Tab(name string) {
	p.T.Helper()
	p.Run("tab "+name, chromedp.Click(fmt.Sprintf(`.tab[data-tab=%q]`, name)), chromedp.WaitVisible("#"+name))
}

// Filter sets one of the units filters (f-name, f-machine, f-state) as
// typing or choosing would.
func (p Page) Filter(id, value string) {
	p.T.Helper()
	p.Run("filter "+id, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event('input')); })()`, id, value)))
}

// Act clicks the action button of a unit row (start, stop, destroy) and
// confirms it in the page's dialog.
func (p Page) Act(unit, action string) {
	p.T.Helper()
	sel := UnitRow(unit) + fmt.Sprintf(` button[data-action=%q]`, action)
	p.Run(action+" "+unit, chromedp.Click(sel), chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
}

// UnitRow is the CSS selector of a unit's row in the units table.
func UnitRow(name string) string { return fmt.Sprintf(`#units-spacer .row[data-unit=%q]`, name) }

// ActiveCell is a JavaScript expression: the text of a unit's
// active/sub-state cell, undefined while the row is not drawn.
func ActiveCell(name string) string {
	return fmt.Sprintf(`(document.querySelector('%s [data-col=active]')||{}).textContent`, UnitRow(name))
}

// UnitsShown is a JavaScript expression: the units table's count line
// ("31 units", "1 of 31 units").
const UnitsShown = `document.querySelector('#unit-shown').textContent`
