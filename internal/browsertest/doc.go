// Package browsertest runs headless Chromium (Debian's chromium package)
// for tests of the web dashboard, through chromedp, and drives the
// dashboard's page for them (Page). Test-only: ui's and functional's tests
// use it; nothing else imports it.
//
// Without chromium a test is skipped, except in CI (CI=true), where a
// missing browser fails it: `make deps` installs it.
package browsertest
