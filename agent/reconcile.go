package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/seed-a1ce88ea/fleet/agent/systemd"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

const (
	// jobTimeout bounds the wait for one job. systemd's own default start
	// and stop timeouts are 90 s; a job still running after this is waited
	// for again by the retry (systemd merges the new request into it).
	jobTimeout = 5 * time.Minute
	// slowRetry is when a unit that cannot be set up for lack of its body
	// is looked at again: not hot, since only a change in etcd can help.
	slowRetry = 30 * time.Second
	// maxJobs bounds the jobs waited for at once.
	maxJobs = 16
)

// Jobs the agent runs for a unit.
const (
	actNone    = ""
	actStart   = "start"
	actRestart = "restart"
	actStop    = "stop"
	actUnload  = "unload"
)

// job is a job of one unit, run in its own goroutine so a slow one (an
// ExecStartPre pulling an image, a unit ignoring SIGTERM) holds back only
// its own unit. While it runs the worker leaves the unit alone, but for
// publishing its state; when it ends, the unit is queued and the worker
// takes the outcome.
type job struct {
	act   string
	want  registry.Placement // the schedule entry it was started for
	known bool               // unload: the agent had dealt with the unit
	res   string             // systemd's job result
	err   error

	// hold: a stop because the lease is in doubt; the entry is not applied,
	// so the unit is started again once the lease is renewed.
	hold bool
}

// item is one unit of a batch being reconciled.
type item struct {
	name      string
	want      registry.Placement
	scheduled bool
	log       *slog.Logger

	amo    bool          // the lease is in doubt and the unit runs at most once: keep it stopped
	enable bool          // its file is being linked and has an [Install] section to enable
	busy   *job          // a job of the unit is running
	err    error         // first failed step; the unit is retried
	slow   time.Duration // with err: retry after this instead of backing off

	// refused says why the unit is left alone: a unit of the host's own
	// has its name (see hostunit.go).
	refused string

	// The unit file as parsed once for this reconcile (see parse).
	parsed   *unit.File
	parseErr error
	parsedOf string
}

// parse returns body parsed, parsing it once per reconcile of the unit
// however many of its options are looked at (at-most-once, health check,
// [Install]): a unit placed here is parsed once, not once per question.
func (it *item) parse(body string) (*unit.File, error) {
	if it.parsedOf != body || it.parsed == nil && it.parseErr == nil {
		it.parsed, it.parseErr = unit.ParseString(body)
		it.parsedOf = body
	}
	return it.parsed, it.parseErr
}

func (it *item) fail(err error) {
	if it.err == nil {
		it.err = err
	}
}

// reconcile makes systemd match the schedule for every unit in names and
// publishes the resulting states. It is level-based: it reads the schedule
// entry, the unit file and systemd's state afresh, whatever made the name
// come up, so running it twice does nothing new. Unit files of the batch
// are written and linked first, then systemd is reloaded once for all of
// them, then jobs are started, then states are read in one call.
//
// A unit is started, restarted or stopped only when its schedule entry
// differs from the one last applied (or its file had to be rewritten): a
// unit that stops or fails by itself is reported, not restarted (its
// Restart= setting is systemd's business), and a fleetd that restarts
// adopts running units with a StartUnit that does nothing.
func (a *Agent) reconcile(ctx context.Context, names []string) {
	doubt := a.doubt.Load()
	items := make([]*item, len(names))
	for i, n := range names {
		p, ok := a.placement(n)
		it := &item{name: n, want: p, scheduled: ok, log: a.log.With("unit", n)}
		items[i] = it
		a.jobsMu.Lock()
		it.busy = a.running[n]
		j := a.finished[n]
		delete(a.finished, n)
		a.jobsMu.Unlock()
		if j != nil {
			a.collect(it, j)
		}
	}

	// Unit files, then one link call, one enable call and one reload for all
	// that changed.
	a.prefetchBodies(ctx, items)
	var link []*item
	for _, it := range items {
		if !it.scheduled || it.busy != nil || it.err != nil || a.refuseHostUnit(ctx, it) {
			continue
		}
		body, err := a.body(ctx, it.want.Hash)
		if err != nil {
			it.fail(err)
			if errors.Is(err, registry.ErrNotFound) {
				it.slow = slowRetry
			}
			continue
		}
		it.amo = a.atMostOnce(it, it.want.Hash, body) && doubt
		a.noteHealthCheck(it, it.want.Hash, body)
		// systemd enforces the CPU and memory the scheduler counted.
		changed, err := a.sd.WriteUnitFile(it.name, unit.EnforceLimits(it.name, body))
		if err != nil {
			it.fail(err)
			continue
		}
		if changed {
			a.restart[it.name] = true
		}
		if changed || a.applied[it.name].Hash != it.want.Hash {
			it.enable = hasInstall(it, body)
			link = append(link, it)
		}
	}
	a.linkAndReload(ctx, link)

	// What systemd runs now, for the units that may need a job: most
	// batches (systemd's signals) need none.
	var pending []*item
	for _, it := range items {
		if it.scheduled && it.busy == nil && it.err == nil && it.refused == "" &&
			(a.applied[it.name] != it.want || a.restart[it.name] || it.amo) {
			pending = append(pending, it)
		}
	}
	before, err := a.sd.UnitStates(ctx, itemNames(pending)...)
	if err != nil {
		for _, it := range pending {
			it.fail(err)
		}
	}

	// Jobs. A unit whose job starts now is published when it ends.
	var publish []*item
	for _, it := range items {
		switch {
		case it.err != nil:
		case it.busy != nil:
			if it.busy.act != actUnload {
				publish = append(publish, it)
			}
		case it.refused != "":
			publish = append(publish, it)
		case !it.scheduled:
			a.startJob(ctx, it, &job{act: actUnload, known: a.known(it.name)})
		case it.amo:
			// The lease may expire before it is renewed, and then the unit
			// may start elsewhere: stopped now, started by nothing.
			delete(a.applied, it.name)
			if st := before[it.name]; st.LoadState == "loaded" && st.ActiveState != "inactive" && st.ActiveState != "failed" {
				it.log.Warn("stopping at-most-once unit: lease in doubt")
				a.startJob(ctx, it, &job{act: actStop, want: it.want, hold: true})
				continue
			}
			publish = append(publish, it)
		default:
			act := actNone
			if a.applied[it.name] != it.want || a.restart[it.name] {
				act = a.action(it, before[it.name])
			}
			if act != actNone {
				a.startJob(ctx, it, &job{act: act, want: it.want})
				continue
			}
			a.applied[it.name] = it.want
			delete(a.restart, it.name)
			publish = append(publish, it)
		}
	}

	a.publish(ctx, publish)

	if ctx.Err() != nil {
		return // shutting down: nothing to retry
	}
	for _, it := range items {
		switch {
		case it.err == nil:
			if it.busy == nil {
				a.queue.forget(it.name)
			}
		case it.slow > 0:
			it.log.Error("cannot reconcile unit; looking again later", "err", it.err, "retry_in", it.slow)
			a.queue.addAfter(it.name, it.slow)
		default:
			d := a.queue.retry(it.name)
			it.log.Warn("reconcile unit", "err", it.err, "retry_in", d)
		}
	}
	a.pruneBodies()
}

// startJob runs j for it's unit in a goroutine of its own. The unit is
// busy until the worker has collected the outcome.
func (a *Agent) startJob(ctx context.Context, it *item, j *job) {
	a.jobsMu.Lock()
	a.running[it.name] = j
	a.jobsMu.Unlock()
	it.busy = j
	a.jobs.Go(func() {
		select {
		case a.slots <- struct{}{}:
			defer func() { <-a.slots }()
			if j.act == actUnload {
				j.err = a.unload(ctx, it.name)
			} else {
				j.res, j.err = a.runJob(ctx, it.name, j.act)
			}
		case <-ctx.Done():
			j.err = ctx.Err()
		}
		a.jobsMu.Lock()
		delete(a.running, it.name)
		a.finished[it.name] = j
		a.jobsMu.Unlock()
		a.queue.add(it.name)
	})
}

// collect takes the outcome of a unit's job that ended.
func (a *Agent) collect(it *item, j *job) {
	if j.err != nil {
		it.fail(j.err)
		return
	}
	switch {
	case j.act == actUnload:
		delete(a.applied, it.name)
		delete(a.published, it.name)
		a.mu.Lock()
		delete(a.amo, it.name)
		a.mu.Unlock()
		if j.known {
			it.log.Info("unloaded unit")
		} else {
			it.log.Debug("unloaded unit")
		}
	case j.res != "done":
		// systemd's verdict (the unit failed to start, say): published
		// with the state, not an error to retry.
		it.log.Warn("unit job did not succeed", "job", j.act, "result", j.res, "hash", j.want.Hash)
	default:
		it.log.Info("unit job done", "job", j.act, "hash", j.want.Hash)
	}
	if j.act != actUnload && !j.hold {
		a.applied[it.name] = j.want
	}
	delete(a.restart, it.name)
}

// body returns the unit body of hash, from the cache or etcd.
func (a *Agent) body(ctx context.Context, hash string) (string, error) {
	if b, ok := a.bodies[hash]; ok {
		return b, nil
	}
	b, err := a.reg.Body(ctx, hash)
	if err != nil {
		return "", err
	}
	a.bodies[hash] = b
	return b, nil
}

// prefetchBodies reads the bodies the batch needs and the cache lacks in
// as few requests as etcd allows, rather than one per unit. What it cannot
// read is left to body, which says why per unit.
func (a *Agent) prefetchBodies(ctx context.Context, items []*item) {
	var missing []string
	seen := map[string]bool{}
	for _, it := range items {
		h := it.want.Hash
		if !it.scheduled || it.busy != nil || it.err != nil || seen[h] {
			continue
		}
		if _, ok := a.bodies[h]; !ok {
			seen[h] = true
			missing = append(missing, h)
		}
	}
	if len(missing) < 2 {
		return
	}
	bodies, err := a.reg.BodiesOf(ctx, missing)
	if err != nil {
		a.log.Debug("read unit bodies; reading them one by one", "err", err, "bodies", len(missing))
		return
	}
	maps.Copy(a.bodies, bodies)
}

// pruneBodies forgets bodies no scheduled unit uses.
func (a *Agent) pruneBodies() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bodies) <= len(a.desired) {
		return
	}
	used := make(map[string]bool, len(a.desired))
	for _, p := range a.desired {
		used[p.Hash] = true
	}
	for h := range a.bodies {
		if !used[h] {
			delete(a.bodies, h)
		}
	}
}

// maxReloadChecks bounds the NeedDaemonReload calls made to avoid a reload:
// past it, one reload is cheaper than asking about every unit.
const maxReloadChecks = 32

// installKeys are the [Install] options that make enabling a unit do
// something: links that make another unit pull it in (WantedBy=,
// RequiredBy=), or enabling other units with it (Also=).
var installKeys = map[string]bool{"WantedBy": true, "RequiredBy": true, "Also": true}

// hasInstall reports whether body asks to be enabled (see installKeys). A
// body that does not parse is not enabled; systemd says what is wrong with
// it when it loads the unit.
func hasInstall(it *item, body string) bool {
	f, err := it.parse(body)
	if err != nil {
		it.log.Warn("unit file does not parse; not enabling it", "err", err)
		return false
	}
	for _, o := range f.Options {
		if o.Section == "Install" && installKeys[o.Name] && o.Value != "" {
			return true
		}
	}
	return false
}

// linkAndReload links the unit files of items, enables those with an
// [Install] section, and reloads systemd once if needed.
func (a *Agent) linkAndReload(ctx context.Context, items []*item) {
	if len(items) == 0 {
		return
	}
	if err := a.sd.LinkUnitFiles(ctx, itemNames(items)...); err != nil {
		// Link one by one, so one bad unit does not hold back the rest.
		for _, it := range items {
			it.fail(a.sd.LinkUnitFiles(ctx, it.name))
		}
	}
	var linked []*item
	for _, it := range items {
		if it.err == nil {
			linked = append(linked, it)
		}
	}
	if len(linked) == 0 {
		return
	}
	enabled := a.enable(ctx, linked)
	linked = slices.DeleteFunc(linked, func(it *item) bool { return it.err != nil })
	if len(linked) == 0 {
		return
	}
	// A daemon-reload costs about 100 ms and makes systemd re-announce
	// every unit. New units do not need one: systemd loads a unit it does
	// not hold, or holds as not-found, from disk when asked for it. Only a
	// unit loaded from an older file does; for small batches, ask.
	// A new enablement link does: systemd reads peer.service.wants/ only
	// when it loads peer.service, so without one a loaded peer would not
	// pull the unit in when it next starts.
	if !enabled && len(linked) <= maxReloadChecks {
		need, err := a.sd.NeedDaemonReload(ctx, itemNames(linked)...)
		if err == nil && !need {
			a.log.Debug("linked units without a reload", "units", len(linked))
			return
		}
	}
	if err := a.sd.Reload(ctx); err != nil {
		for _, it := range linked {
			it.fail(err)
		}
		return
	}
	a.log.Debug("reloaded systemd", "units", len(linked), "enabled", enabled)
}

// enable enables the units of items that ask for it, in one call, and
// reports whether any enablement link was made. A unit that cannot be
// enabled fails and is retried; it gets no job meanwhile.
func (a *Agent) enable(ctx context.Context, items []*item) bool {
	var enable []*item
	for _, it := range items {
		if it.enable {
			enable = append(enable, it)
		}
	}
	if len(enable) == 0 {
		return false
	}
	changed, err := a.sd.EnableUnitFiles(ctx, itemNames(enable)...)
	if err == nil {
		return changed
	}
	// One by one, so one bad unit does not hold back the rest.
	changed = false
	for _, it := range enable {
		c, err := a.sd.EnableUnitFiles(ctx, it.name)
		it.fail(err)
		changed = changed || c
	}
	return changed
}

// action decides what a scheduled unit whose entry is not applied yet
// needs, given its state.
func (a *Agent) action(it *item, st systemd.UnitState) string {
	if st.LoadState != "loaded" {
		// Not startable (not-found, bad-setting, masked...). Its published
		// state says why; only a new body can change that.
		it.log.Warn("unit is not loadable", "load_state", st.LoadState)
		return actNone
	}
	running := st.ActiveState == "active" || st.ActiveState == "activating" || st.ActiveState == "reloading"
	switch it.want.DesiredState {
	case registry.StateLaunched:
		if a.restart[it.name] && running {
			return actRestart
		}
		return actStart
	default: // loaded: in place, not started
		if st.ActiveState != "inactive" && st.ActiveState != "failed" {
			return actStop
		}
		return actNone
	}
}

// runJob runs a start, restart or stop job and returns its result.
func (a *Agent) runJob(ctx context.Context, name, act string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	switch act {
	case actStart:
		return a.sd.StartUnit(ctx, name)
	case actRestart:
		return a.sd.RestartUnit(ctx, name)
	default:
		return a.sd.StopUnit(ctx, name)
	}
}

// known reports whether the agent has had anything to do with name: it
// only decides how loudly an unload is logged.
func (a *Agent) known(name string) bool {
	_, applied := a.applied[name]
	_, published := a.published[name]
	return applied || published
}

// unload takes an unscheduled unit out of systemd: stop, unlink, forget its
// failure, remove its file and its published state. Each step is a no-op
// when already done, so a unit that was never here is fine.
func (a *Agent) unload(ctx context.Context, name string) error {
	if where, err := a.sd.HostUnit(ctx, name); err != nil {
		return err
	} else if where != "" {
		return a.forgetHostUnit(ctx, name)
	}
	jctx, cancel := context.WithTimeout(ctx, jobTimeout)
	res, err := a.sd.StopUnit(jctx, name)
	cancel()
	switch {
	case errors.Is(err, systemd.ErrNoSuchUnit): // not loaded: nothing runs
	case err != nil:
		return err
	case res != "done":
		return fmt.Errorf("stop %s: job %s", name, res)
	}
	// Not linked any more: systemd's unit file logic does not know it.
	if err := a.sd.DisableUnitFiles(ctx, name); err != nil && !errors.Is(err, systemd.ErrNoSuchUnit) {
		return err
	}
	if err := a.sd.ResetFailedUnit(ctx, name); err != nil {
		return err
	}
	if err := a.sd.RemoveUnitFile(name); err != nil {
		return err
	}
	return a.presence.DeleteState(ctx, name)
}

// publish reads the state of items in one call and publishes those that
// differ from what etcd holds, in one write. A unit with a job running is
// published with the hash the job is for.
func (a *Agent) publish(ctx context.Context, items []*item) {
	if len(items) == 0 {
		return
	}
	states, err := a.sd.UnitStates(ctx, itemNames(items)...)
	if err != nil {
		for _, it := range items {
			it.fail(err)
		}
		return
	}
	var changed []*item
	var publish []registry.UnitState
	for _, it := range items {
		hash := it.want.Hash
		if it.busy != nil {
			hash = it.busy.want.Hash
		}
		st := states[it.name]
		s := registry.UnitState{
			Name: it.name, Machine: a.machine, Hash: hash,
			LoadState: st.LoadState, ActiveState: st.ActiveState, SubState: st.SubState,
			Health: a.healthOf(it.name, hash, st.ActiveState),
		}
		if it.refused != "" {
			s = refusedState(s, it.refused)
		}
		if a.published[it.name] == s {
			continue
		}
		changed = append(changed, it)
		publish = append(publish, s)
	}
	if len(publish) == 0 {
		return
	}
	if err := a.presence.PublishStates(ctx, publish); err != nil {
		for _, it := range changed {
			// A write that timed out may still have been applied: etcd
			// holds either state now, so the retry writes whatever systemd
			// says then, even if it is what was published before.
			delete(a.published, it.name)
			it.fail(err)
		}
		return
	}
	for i, s := range publish {
		a.published[s.Name] = s
		changed[i].log.Debug("published unit state", "load", s.LoadState, "active", s.ActiveState, "sub", s.SubState)
	}
}

func itemNames(items []*item) []string {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.name
	}
	return names
}
