package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMetadataOverrideApply(t *testing.T) {
	configured := map[string]string{"role": "web", "disk": "hdd"}
	tests := []struct {
		name string
		o    registry.MetadataOverride
		want map[string]string
	}{
		{"none", registry.MetadataOverride{}, map[string]string{"role": "web", "disk": "hdd"}},
		{"set and replace", registry.MetadataOverride{Set: map[string]string{"disk": "ssd", "zone": "a"}},
			map[string]string{"role": "web", "disk": "ssd", "zone": "a"}},
		{"remove a configured key", registry.MetadataOverride{Removed: []string{"role", "nope"}}, map[string]string{"disk": "hdd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.o.Apply(configured))
		})
	}
	require.Equal(t, map[string]string{"role": "web", "disk": "hdd"}, configured, "Apply does not modify its argument")
}

func TestPatchMetadata(t *testing.T) {
	reg, ctx := newRegistry(t)
	require.NoError(t, reg.PatchMetadata(ctx, []registry.MetadataOp{
		{Machine: "m1", Key: "disk", Value: "ssd"},
		{Machine: "m1", Key: "role", Remove: true},
		{Machine: "m2", Key: "zone", Value: "a"},
		{Machine: "m2", Key: "zone", Value: "b"}, // in order: the last wins
	}))
	all, err := reg.MetadataOverrides(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]registry.MetadataOverride{
		"m1": {Set: map[string]string{"disk": "ssd"}, Removed: []string{"role"}},
		"m2": {Set: map[string]string{"zone": "b"}},
	}, all)

	// Adding a removed key takes the tombstone away; removing a set key adds one.
	require.NoError(t, reg.PatchMetadata(ctx, []registry.MetadataOp{
		{Machine: "m1", Key: "role", Value: "db"},
		{Machine: "m2", Key: "zone", Remove: true},
	}))
	all, err = reg.MetadataOverrides(ctx)
	require.NoError(t, err)
	require.Equal(t, registry.MetadataOverride{Set: map[string]string{"disk": "ssd", "role": "db"}}, all["m1"])
	require.Equal(t, registry.MetadataOverride{Removed: []string{"zone"}}, all["m2"])

	require.ErrorContains(t, reg.PatchMetadata(ctx, []registry.MetadataOp{{Machine: "a/b", Key: "k"}}), "invalid operation")
	require.NoError(t, reg.PatchMetadata(ctx, nil))

	// Concurrent patches of one machine all take effect.
	done := make(chan error)
	for i := range 8 {
		go func() {
			done <- reg.PatchMetadata(ctx, []registry.MetadataOp{{Machine: "m3", Key: fmt.Sprintf("k%d", i), Value: "v"}})
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
	all, err = reg.MetadataOverrides(ctx)
	require.NoError(t, err)
	require.Len(t, all["m3"].Set, 8)
}

func TestKeepMetadata(t *testing.T) {
	reg, ctx := newRegistry(t)
	configured := machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Hostname: "h1", Metadata: map[string]string{"role": "web", "disk": "hdd"}}
	require.NoError(t, reg.PatchMetadata(ctx, []registry.MetadataOp{{Machine: "m1", Key: "disk", Value: "ssd"}}))

	eff, rev, err := reg.EffectiveMachine(ctx, configured)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"role": "web", "disk": "ssd"}, eff.Metadata)
	p, err := reg.Register(ctx, eff, registry.MinTTL)
	require.NoError(t, err)

	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.KeepMetadata(kctx, configured, rev) }()

	metadata := func() map[string]string {
		ms, _, err := reg.Machines(ctx)
		require.NoError(t, err)
		require.Len(t, ms, 1)
		return ms[0].Metadata
	}
	require.NoError(t, reg.PatchMetadata(ctx, []registry.MetadataOp{
		{Machine: "m1", Key: "role", Remove: true},
		{Machine: "m1", Key: "zone", Value: "eu"},
	}))
	require.Eventually(t, func() bool {
		return fmt.Sprint(metadata()) == fmt.Sprint(map[string]string{"disk": "ssd", "zone": "eu"})
	}, 5*time.Second, 20*time.Millisecond)

	cancel()
	require.NoError(t, <-done)
	require.NoError(t, p.Revoke(ctx))

	// The machine leaves and rejoins: its dynamic metadata is still there.
	eff, _, err = reg.EffectiveMachine(ctx, configured)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"disk": "ssd", "zone": "eu"}, eff.Metadata)

	// KeepMetadata returns when the presence ends.
	p, err = reg.Register(ctx, eff, registry.MinTTL)
	require.NoError(t, err)
	go func() { done <- p.KeepMetadata(ctx, configured, rev) }()
	require.NoError(t, p.Revoke(ctx))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("KeepMetadata did not return after the presence ended")
	}
}

func TestStatesOf(t *testing.T) {
	reg, ctx := newRegistry(t)
	var ps []*registry.Presence
	for _, id := range []string{"m1", "m2", "m3"} {
		p, err := reg.Register(ctx, machine.Machine{ID: id, Hostname: id}, registry.MinTTL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Revoke(context.Background()) })
		ps = append(ps, p)
	}
	publish := func(p *registry.Presence, name, active string) {
		require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: name, Hash: "h", LoadState: "loaded", ActiveState: active}))
	}
	publish(ps[0], "a.service", "active")
	publish(ps[2], "a.service", "failed")
	publish(ps[1], "b.service", "active")
	publish(ps[0], "b.service", "inactive")

	names := func(ss []registry.UnitState) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name+"@"+s.Machine+"="+s.ActiveState)
		}
		return out
	}
	got, err := reg.StatesOf(ctx, []string{"a.service"}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"a.service@m1=active", "a.service@m3=failed"}, names(got))
	got, err = reg.StatesOf(ctx, []string{"b.service", "a.service"}, []string{"m1"})
	require.NoError(t, err)
	require.Equal(t, []string{"a.service@m1=active", "b.service@m1=inactive"}, names(got))
	got, err = reg.StatesOf(ctx, []string{"nope.service"}, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestWatchChanges(t *testing.T) {
	reg, ctx := newRegistry(t)
	rev, err := reg.Revision(ctx)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := reg.WatchChanges(wctx, rev)

	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "a.service", Hash: "h1", DesiredState: registry.StateLaunched}, "[Service]\nExecStart=/bin/true\n", false))
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h"}, registry.MinTTL)
	require.NoError(t, err)
	lead, err := reg.Campaign(ctx, "m1", 5*time.Second)
	require.NoError(t, err)
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m1", Name: "a.service", Hash: "h1", DesiredState: registry.StateLaunched}}})
	require.NoError(t, err)
	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: "a.service", Hash: "h1", ActiveState: "active"}))
	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: "a.service", Hash: "h1", ActiveState: "failed"}))
	require.NoError(t, reg.DestroyUnit(ctx, "a.service"))
	require.NoError(t, lead.Resign(ctx))
	require.NoError(t, p.Revoke(ctx))

	var seen []string
	for len(seen) < 10 {
		select {
		case b := <-ch:
			require.NoError(t, b.Err)
			for _, c := range b.Changes {
				switch {
				case c.Unit != nil && c.Unit.Cur != nil:
					seen = append(seen, "unit+"+c.Unit.Cur.Name)
				case c.Unit != nil:
					seen = append(seen, "unit-"+c.Unit.Prev.Name)
				case c.Machine != nil && c.Machine.Cur != nil:
					seen = append(seen, "machine+"+c.Machine.Cur.ID)
				case c.Machine != nil:
					seen = append(seen, "machine-"+c.Machine.Prev.ID)
				case c.Placement != nil:
					seen = append(seen, "placement+"+c.Placement.Cur.Machine+"/"+c.Placement.Cur.Name)
				case c.State != nil && c.State.Prev == nil:
					seen = append(seen, "state+"+c.State.Cur.ActiveState)
				case c.State != nil && c.State.Cur != nil:
					seen = append(seen, "state "+c.State.Prev.ActiveState+"->"+c.State.Cur.ActiveState)
				case c.State != nil:
					seen = append(seen, "state-")
				case c.Leader:
					seen = append(seen, "leader")
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("missing changes; seen %v", seen)
		}
	}
	// The lease revoke deletes the machine and its state in one revision, in
	// key order: machines/ sorts before states/.
	require.Equal(t, []string{
		"unit+a.service", "machine+m1", "leader", "placement+m1/a.service", "state+active",
		"state active->failed", "unit-a.service", "leader", "machine-m1", "state-",
	}, seen)
}
