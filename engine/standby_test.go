package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// standbyCluster is a live cluster for the standby tests: machines with
// presences, a leader engine that places, and a seeded source of changes.
type standbyCluster struct {
	t         *testing.T
	ctx       context.Context
	cli       *clientv3.Client
	reg       *registry.Registry
	rnd       *rand.Rand
	presences map[string]*registry.Presence
	units     []string
	nextUnit  int
	nextMach  int
	// between, when set, runs after the unit record of apart(0) is
	// written and before its body is, given the record's revision.
	between func(rev int64)
}

func newStandbyCluster(t *testing.T, ctx context.Context, seed uint64) *standbyCluster {
	cli := etcdtest.Start(t).Client(t)
	c := &standbyCluster{t: t, ctx: ctx, cli: cli, reg: registry.New(cli), rnd: rand.New(rand.NewPCG(seed, 1)), presences: map[string]*registry.Presence{}}
	for range 6 {
		c.addMachine()
	}
	return c
}

var standbyBodies = []string{
	"[Service]\nExecStart=/bin/sleep 1\n",
	"[Service]\nExecStart=/bin/sleep 2\n[X-Fleet]\nMachineMetadata=role=web\n",
	"[Service]\nExecStart=/bin/sleep 3\n[X-Fleet]\nMachineMetadata=role=db\n",
	"[Service]\nExecStart=/bin/sleep 4\n[X-Fleet]\nConflicts=conf*.service\n",
	"[Service]\nExecStart=/bin/sleep 5\n[X-Fleet]\nGlobal=true\n",
	"[Service]\nExecStart=/bin/sleep 6\n[X-Fleet]\nAtMostOnce=true\n",
	"[Service]\nExecStart=/bin/sleep 7\n[X-Fleet]\nMachineMetadata=role=none\n",
	"[Service]\nExecStart=/bin/sleep 8\n[X-Fleet]\nNoSuchOption=1\n",
}

func (c *standbyCluster) addMachine() {
	c.nextMach++
	id := fmt.Sprintf("m%02d", c.nextMach)
	role := []string{"web", "db", "web"}[c.rnd.IntN(3)]
	p, err := c.reg.Register(c.ctx, machine.Machine{ID: id, Hostname: id, Metadata: map[string]string{"role": role}}, 5*time.Second)
	require.NoError(c.t, err)
	c.t.Cleanup(p.Close)
	c.presences[id] = p
}

// change makes one random change: submit, destroy, desired state, a machine
// joining, leaving or changing its metadata, or a unit and its body written
// apart (see apart).
func (c *standbyCluster) change() {
	t, ctx := c.t, c.ctx
	switch k := c.rnd.IntN(23); {
	case k >= 20:
		c.apart(k - 20)
	case k < 9 || len(c.units) == 0:
		c.nextUnit++
		i := c.rnd.IntN(len(standbyBodies))
		prefix := []string{"u", "conf"}[c.rnd.IntN(2)]
		name := fmt.Sprintf("%s%03d.service", prefix, c.nextUnit)
		f, err := unit.ParseString(standbyBodies[i])
		require.NoError(t, err)
		state := []registry.State{registry.StateLaunched, registry.StateLoaded, registry.StateInactive}[c.rnd.IntN(3)]
		require.NoError(t, c.reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: state}, f.String(), false))
		c.units = append(c.units, name)
	case k < 12:
		i := c.rnd.IntN(len(c.units))
		require.NoError(t, c.reg.DestroyUnit(ctx, c.units[i]))
		c.units = append(c.units[:i], c.units[i+1:]...)
	case k < 16:
		state := []registry.State{registry.StateLaunched, registry.StateLoaded, registry.StateInactive}[c.rnd.IntN(3)]
		require.NoError(t, c.reg.SetDesiredState(ctx, c.units[c.rnd.IntN(len(c.units))], state))
	case k < 17:
		c.addMachine()
	case k < 18 && len(c.presences) > 3:
		ids := sortedKeys(c.presences)
		id := ids[c.rnd.IntN(len(ids))]
		require.NoError(t, c.presences[id].Revoke(ctx))
		delete(c.presences, id)
	default:
		ids := sortedKeys(c.presences)
		p := c.presences[ids[c.rnd.IntN(len(ids))]]
		m := p.Machine()
		m.Metadata = map[string]string{"role": []string{"web", "db"}[c.rnd.IntN(2)]}
		require.NoError(t, p.UpdateMachine(ctx, m))
	}
}

// apart writes a unit record and its body in separate transactions, as no
// fleet client does but etcd allows, so that a standby sees the body's event
// in another response than the unit's: how 0 writes the unit first and a new
// body after it, 1 a new body first and the unit after it, 2 only the unit,
// naming a body stored before (its units may all be gone).
func (c *standbyCluster) apart(how int) {
	t, ctx := c.t, c.ctx
	c.nextUnit++
	name := fmt.Sprintf("apart%03d.service", c.nextUnit)
	text := fmt.Sprintf("[Service]\nExecStart=/bin/sleep %d\n", 100+c.nextUnit)
	if how == 2 {
		text = standbyBodies[c.rnd.IntN(len(standbyBodies))]
	}
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	hash := f.Hash().String()
	putBody := func() {
		_, err := c.cli.Put(ctx, c.reg.Prefix()+"bodies/"+hash, f.String())
		require.NoError(t, err)
	}
	if how == 1 {
		putBody()
	}
	resp, err := c.cli.Put(ctx, c.reg.Prefix()+"units/"+name, fmt.Sprintf(`{"hash":%q,"desiredState":"launched"}`, hash))
	require.NoError(t, err)
	if how == 0 {
		if c.between != nil {
			c.between(resp.Header.Revision)
		}
		putBody()
	}
	c.units = append(c.units, name)
}

// settled waits until the leader has written what the changes call for:
// the schedule and the reasons stay the same for a while.
func (c *standbyCluster) settled() {
	t := c.t
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		ps, _, err := c.reg.Placements(c.ctx)
		require.NoError(t, err)
		ws, _, err := c.reg.Unplaced(c.ctx)
		require.NoError(t, err)
		now := fmt.Sprint(ps, ws)
		if now == last {
			return
		}
		last = now
		require.True(t, time.Now().Before(deadline), "schedule still changing after 20 s")
	}
}

// requireSameModel compares a standby's model with one read in full.
func requireSameModel(t *testing.T, got, want *standby) {
	t.Helper()
	norm := func(m map[string]registry.Unit) map[string]registry.Unit {
		out := make(map[string]registry.Unit, len(m))
		for k, u := range m {
			u.ModRev = 0
			out[k] = u
		}
		return out
	}
	require.Equal(t, norm(want.st.units), norm(got.st.units), "unit records")
	require.Equal(t, want.st.machines, got.st.machines, "machines")
	require.Equal(t, want.st.reasons, got.st.reasons, "unplaced reasons")
	require.Equal(t, want.st.refs, got.st.refs, "body references")
	require.Equal(t, want.st.invalid, got.st.invalid, "invalid units")
	gs, ws := got.st.sched.snapshot(), want.st.sched.snapshot()
	require.Equal(t, ws.Machines, gs.Machines, "scheduler machines")
	require.Equal(t, ws.Units, gs.Units, "scheduler units")
	all := func(sb *standby, snap Snapshot) []registry.Placement {
		ps := append([]registry.Placement(nil), snap.Placements...)
		for _, p := range sb.st.sched.orphans {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].Machine != ps[j].Machine {
				return ps[i].Machine < ps[j].Machine
			}
			return ps[i].Name < ps[j].Name
		})
		return ps
	}
	require.Equal(t, all(want, ws), all(got, gs), "placements")
}

// runEngine runs an engine of cfg until stop, which returns once Run has
// (and may be called again).
func runEngine(ctx context.Context, cfg Config) (e *Engine, stop func()) {
	e = New(cfg)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return e, func() { cancel(); <-done }
}

// TestStandbyModelMatchesFullRead follows a cluster that a leader places
// through random changes, then compares the standby's model with a full
// read: first as following left it, then after a catch-up from a standby
// that stopped following half way.
func TestStandbyModelMatchesFullRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := newStandbyCluster(t, ctx, 11)
	_, stopLeader := runEngine(ctx, Config{Registry: c.reg, ID: "leader", LeaderTTL: time.Second, ReconcileInterval: time.Hour, GCInterval: -1})
	defer stopLeader()

	for range 30 {
		c.change()
	}
	e := New(Config{Registry: c.reg, ID: "standby", AtMostOnceMargin: time.Hour})
	sb, err := e.readStandby(ctx)
	require.NoError(t, err)
	// A second standby follows only the first half of the changes; it is
	// caught up at the end.
	half, err := e.readStandby(ctx)
	require.NoError(t, err)
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	w := sb.watch(wctx, c.reg)
	hctx, stopHalf := context.WithCancel(ctx)
	defer stopHalf()
	hw := half.watch(hctx, c.reg)
	// A unit whose body comes later than its record is first given to the
	// scheduler without it (Invalid), and again when the body arrives.
	c.between = func(rev int64) {
		for sb.unitRev < rev {
			require.NoError(t, e.burst(ctx, sb, w, true))
		}
	}

	for i := range 120 {
		c.change()
		require.NoError(t, e.burst(ctx, sb, w, false))
		if i < 60 {
			require.NoError(t, e.burst(ctx, half, hw, false))
		}
		if i == 60 {
			stopHalf()
		}
	}
	c.settled()
	stopLeader()

	// Sentinels, one per followed prefix, written after everything else:
	// once the standby has applied all five it has seen every change.
	rev := map[string]int64{}
	for _, kv := range [][2]string{
		{"units/zz.service", `{"hash":"0000","desiredState":"inactive"}`},
		{"machines/zz", `{"hostname":"zz"}`},
		{"schedule/zz/zz.service", `{"hash":"0000","desiredState":"loaded"}`},
		{"unplaced/zz.service", "sentinel"},
		{"bodies/zz", "[Service]\nExecStart=/bin/true\n"},
	} {
		resp, err := c.cli.Put(ctx, c.reg.Prefix()+kv[0], kv[1])
		require.NoError(t, err)
		rev[kv[0]] = resp.Header.Revision
	}
	for sb.unitRev < rev["units/zz.service"] || sb.machineRev < rev["machines/zz"] ||
		sb.placeRev < rev["schedule/zz/zz.service"] || sb.whyRev < rev["unplaced/zz.service"] || sb.st.bodyRev < rev["bodies/zz"] {
		require.NoError(t, e.burst(ctx, sb, w, true))
	}
	stopWatches()
	fresh, err := e.readStandby(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, fresh.st.units)
	requireSameModel(t, sb, fresh)
	full, err := e.catchUp(ctx, sb)
	require.NoError(t, err)
	require.Empty(t, full, "a standby that followed every event reads nothing in full")
	requireSameModel(t, sb, fresh)

	full, err = e.catchUp(ctx, half)
	require.NoError(t, err)
	t.Logf("the standby stopped half way read %v in full", full)
	requireSameModel(t, half, fresh)
}

// TestStandbyTakesOver: a standby engine wins the election when the leader
// goes and places a unit submitted meanwhile, from its warm model.
func TestStandbyTakesOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newStandbyCluster(t, ctx, 7)
	run := func(id string) func() {
		e, stop := runEngine(ctx, Config{Registry: c.reg, ID: id, LeaderTTL: time.Second, Standby: true, GCInterval: -1})
		for id == "a" && !e.Leading() {
			time.Sleep(10 * time.Millisecond)
		}
		return stop
	}
	stopA := run("a")
	stopB := run("b")
	defer stopB()
	for range 40 {
		c.change()
	}
	c.settled()
	stopA()
	c.nextUnit++
	name := fmt.Sprintf("late%03d.service", c.nextUnit)
	f, err := unit.ParseString(standbyBodies[0])
	require.NoError(t, err)
	require.NoError(t, c.reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, f.String(), false))
	for {
		ps, err := c.reg.PlacementsOf(ctx, name)
		require.NoError(t, err)
		if len(ps) == 1 {
			break
		}
		require.NoError(t, ctx.Err(), "the standby never placed %s", name)
		time.Sleep(20 * time.Millisecond)
	}
	c.settled()
	// What the new leader wrote is what a full pass over etcd decides: a
	// fresh scheduler has nothing to change.
	e := New(Config{Registry: c.reg, ID: "check"})
	fresh, err := e.readStandby(ctx)
	require.NoError(t, err)
	stopB()
	plan := fresh.st.sched.Plan()
	require.Empty(t, plan.Ops, "a full pass after the takeover changes nothing")
}

// TestLeaderTakesBodiesFromItsWatch: the leader gets a new unit's body from
// its watch of the bodies, also when the body is written after the unit
// (the unit is Invalid meanwhile and placed once the body comes, without
// waiting for a resync) or was stored before it.
func TestLeaderTakesBodiesFromItsWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newStandbyCluster(t, ctx, 3)
	e, stop := runEngine(ctx, Config{Registry: c.reg, ID: "leader", LeaderTTL: time.Second, ReconcileInterval: time.Hour, GCInterval: -1})
	defer stop()
	for !e.Leading() {
		time.Sleep(10 * time.Millisecond)
	}
	placed := func(name string) bool {
		ps, err := c.reg.PlacementsOf(ctx, name)
		require.NoError(t, err)
		return len(ps) == 1
	}
	// The body comes after the leader saw its unit.
	c.between = func(int64) {
		for e.Unplaced()["apart001.service"] == "" {
			require.NoError(t, ctx.Err(), "the leader never judged the unit without its body")
			time.Sleep(10 * time.Millisecond)
		}
		require.False(t, placed("apart001.service"))
	}
	c.apart(0)
	c.between = nil
	c.apart(1) // the body first
	// A body stored before, in a transaction of its own.
	f, err := unit.ParseString(standbyBodies[0])
	require.NoError(t, err)
	_, err = c.cli.Put(ctx, c.reg.Prefix()+"bodies/"+f.Hash().String(), f.String())
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	_, err = c.cli.Put(ctx, c.reg.Prefix()+"units/before.service", fmt.Sprintf(`{"hash":%q,"desiredState":"launched"}`, f.Hash().String()))
	require.NoError(t, err)
	c.units = append(c.units, "before.service")
	for _, name := range c.units {
		for !placed(name) {
			require.NoError(t, ctx.Err(), "%s never placed", name)
			time.Sleep(20 * time.Millisecond)
		}
	}
}
