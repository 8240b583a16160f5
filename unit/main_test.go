package unit

import (
	"testing"

	"go.uber.org/goleak"
)

// go-systemd lexes on a goroutine of its own; a leak would show up here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
