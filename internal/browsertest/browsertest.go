// Package browsertest runs headless Chromium (Debian's chromium package)
// for tests of the web dashboard, through chromedp. Test-only.
//
// Without chromium a test is skipped, except in CI (CI=true), where a
// missing browser fails it: `make deps` installs it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

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
