package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestRolloutEvents(t *testing.T) {
	start := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	prev := registry.Rollout{ID: "web@*.service", To: "new", Phase: registry.RolloutRunning, Started: start,
		Steps: []registry.RolloutStep{{Unit: "web@1.service", State: registry.StepPending}, {Unit: "web@2.service", State: registry.StepPending}}}
	require.Equal(t, []Event{{Type: EventRolloutStarted, Rollout: prev.ID, Unit: prev.ID, To: "new"}}, rolloutEvents(nil, &prev))

	cur := prev
	cur.Steps = []registry.RolloutStep{{Unit: "web@1.service", State: registry.StepFailed, Reason: "health check: fail: exit status 1"}, prev.Steps[1]}
	cur.Phase, cur.Message, cur.Paused = registry.RolloutReverting, "web@1.service: failed; reverting", true
	require.Equal(t, []Event{
		{Type: EventRolloutStep, Rollout: prev.ID, Unit: "web@1.service", From: "pending", To: "failed", Result: "health check: fail: exit status 1"},
		{Type: EventRolloutPhase, Rollout: prev.ID, Unit: prev.ID, From: "running", To: "reverting", Result: "web@1.service: failed; reverting"},
		{Type: EventRolloutPaused, Rollout: prev.ID, Unit: prev.ID},
	}, rolloutEvents(&prev, &cur))
	require.Empty(t, rolloutEvents(&cur, &cur), "an unchanged record says nothing")
	require.Empty(t, rolloutEvents(&cur, nil))
}
