package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// etcd hygiene: without it etcd only grows (every --replace leaves a body,
// every write leaves history, a machine that never returns keeps its
// global and pinned placements) until its quota alarm makes the cluster
// read-only. The leader cleans up in the background of its term, in
// fenced writes like its plans; a deposed leader's cleaning fails.

func (c *Config) setHygieneDefaults() {
	if c.GCInterval == 0 {
		c.GCInterval = 5 * time.Minute
	}
	if c.MachineGCAfter <= 0 {
		c.MachineGCAfter = 24 * time.Hour
	}
	if c.BodyGrace <= 0 {
		c.BodyGrace = time.Minute
	}
	if c.CompactRetention <= 0 {
		c.CompactRetention = 15 * time.Minute
	}
}

// hygiene is what one leadership term remembers between cleaning passes.
type hygiene struct {
	reg  *registry.Registry
	lead *registry.Leadership
	cfg  Config

	// Bodies unreferenced at the last pass: collected at a later pass at
	// least BodyGrace after, if still unreferenced and not rewritten. An
	// agent or API call that read a placement or unit a moment before the
	// body went unreferenced still finds the body.
	candidates map[string]bodyCandidate
	// Revisions seen by past passes, oldest first: the compaction target
	// is the newest one at least CompactRetention old. A new leader knows
	// none, so it compacts nothing for its first CompactRetention.
	revs      []revAt
	compacted int64
}

type bodyCandidate struct {
	modRev int64
	since  time.Time
}

type revAt struct {
	at  time.Time
	rev int64
}

// hygieneResult is what one pass did.
type hygieneResult struct {
	bodies     int   // bodies collected
	marked     int   // machines newly recorded absent
	machines   int   // absent machines whose schedule was dropped
	placements int   // placements dropped with them
	compacted  int64 // revision compacted to; 0 if none
}

func newHygiene(reg *registry.Registry, lead *registry.Leadership, cfg Config) *hygiene {
	return &hygiene{reg: reg, lead: lead, cfg: cfg, candidates: map[string]bodyCandidate{}}
}

// keepClean runs a hygiene pass every GCInterval until ctx ends or the
// leadership is lost. The first pass comes one interval into the term, so
// that a takeover is not slowed by it.
func (e *Engine) keepClean(ctx context.Context, lead *registry.Leadership) {
	h := newHygiene(e.cfg.Registry, lead, e.cfg)
	t := time.NewTicker(e.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		r, err := h.pass(ctx, start)
		switch {
		case errors.Is(err, registry.ErrNotLeader) || ctx.Err() != nil:
			return // the leader loop notices too
		case err != nil:
			e.log.Warn("etcd hygiene pass failed; next one in an interval", "err", err, "interval", e.cfg.GCInterval)
		case r != hygieneResult{}:
			e.log.Info("etcd hygiene", "bodies_collected", r.bodies, "machines_marked_absent", r.marked,
				"machines_dropped", r.machines, "placements_dropped", r.placements, "compacted_to", r.compacted, "took", time.Since(start))
		default:
			e.log.Debug("etcd hygiene: nothing to do", "took", time.Since(start))
		}
	}
}

// pass runs one cleaning pass as of now: schedules of long-gone machines,
// unreferenced bodies, then compaction. Each step runs even if an earlier
// one failed (the first error is returned), except after ErrNotLeader.
func (h *hygiene) pass(ctx context.Context, now time.Time) (hygieneResult, error) {
	var r hygieneResult
	var errs []error
	for _, step := range []func(context.Context, time.Time, *hygieneResult) error{h.dropAbsent, h.collectBodies, h.compact} {
		err := step(ctx, now, &r)
		if errors.Is(err, registry.ErrNotLeader) {
			return r, err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return r, errors.Join(errs...)
}

// dropAbsent records when machines that still have placements were first
// seen absent, and drops the schedule of those absent for MachineGCAfter.
// The scheduler keeps such placements (global units, units pinned by
// MachineID) for a machine that may come back; after this long it is not
// coming back as it was. The engine's next resync sees them gone: a pinned
// unit is then reported unplaceable, and a returning machine is offered
// its units again like a new one.
func (h *hygiene) dropAbsent(ctx context.Context, now time.Time, r *hygieneResult) error {
	machines, _, err := h.reg.Machines(ctx)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(machines))
	for _, m := range machines {
		present[m.ID] = true
	}
	placements, _, err := h.reg.Placements(ctx)
	if err != nil {
		return err
	}
	scheduled := map[string]bool{}
	for _, p := range placements {
		scheduled[p.Machine] = true
	}
	absent, err := h.reg.AbsentMachines(ctx)
	if err != nil {
		return err
	}
	var forget []string
	for _, id := range sortedKeys(absent) {
		if present[id] || !scheduled[id] {
			forget = append(forget, id)
		}
	}
	if len(forget) > 0 {
		if err := h.reg.ForgetAbsent(ctx, h.lead, forget...); err != nil {
			return err
		}
	}
	for _, id := range sortedKeys(scheduled) {
		if present[id] {
			continue
		}
		since, ok := absent[id]
		if !ok {
			if err := h.reg.MarkAbsent(ctx, h.lead, id, now); err != nil {
				return err
			}
			r.marked++
			continue
		}
		if now.Sub(since) < h.cfg.MachineGCAfter {
			continue
		}
		n, err := h.reg.DropSchedule(ctx, h.lead, id)
		if errors.Is(err, registry.ErrConflict) {
			continue // it came back meanwhile
		}
		if err != nil {
			return err
		}
		r.machines++
		r.placements += n
	}
	return nil
}

// collectBodies deletes bodies unreferenced at this pass and at an earlier
// one at least BodyGrace before, with the same mod revision.
func (h *hygiene) collectBodies(ctx context.Context, now time.Time, r *hygieneResult) error {
	unref, err := h.reg.UnreferencedBodies(ctx)
	if err != nil {
		return err
	}
	due := map[string]int64{}
	for hash, rev := range unref {
		c, ok := h.candidates[hash]
		if !ok || c.modRev != rev {
			h.candidates[hash] = bodyCandidate{modRev: rev, since: now}
			continue
		}
		if now.Sub(c.since) >= h.cfg.BodyGrace {
			due[hash] = rev
		}
	}
	for hash := range h.candidates {
		if _, ok := unref[hash]; !ok {
			delete(h.candidates, hash) // referenced again, or gone
		}
	}
	if len(due) == 0 {
		return nil
	}
	n, err := h.reg.CollectBodies(ctx, h.lead, due)
	r.bodies += n
	if err != nil {
		return err
	}
	for hash := range due {
		delete(h.candidates, hash)
	}
	return nil
}

// compact compacts etcd's history to the newest revision seen at least
// CompactRetention ago. Watchers whose revision is older (an agent cut off
// for longer, an idle event stream that reconnects) get a compacted error
// and read again; the registry's watches ask for progress notifications so
// that a quiet but connected watch moves along with the revision.
func (h *hygiene) compact(ctx context.Context, now time.Time, r *hygieneResult) error {
	rev, err := h.reg.Revision(ctx)
	if err != nil {
		return err
	}
	h.revs = append(h.revs, revAt{at: now, rev: rev})
	i := -1
	for j, ra := range h.revs {
		if now.Sub(ra.at) >= h.cfg.CompactRetention {
			i = j
		}
	}
	if i < 0 {
		return nil
	}
	target := h.revs[i].rev
	h.revs = h.revs[i+1:]
	if target <= h.compacted {
		return nil
	}
	if err := h.reg.Compact(ctx, target); err != nil {
		return fmt.Errorf("etcd hygiene: %w", err)
	}
	h.compacted, r.compacted = target, target
	return nil
}
