package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// Explainer says where a unit may run and why (GET
// /fleet/v1/units/{name}/placement, fleetctl explain). The registry client
// and the HTTP client implement it.
type Explainer interface {
	// ExplainPlacement returns every present machine with the checker that
	// rejects the unit there or its score, or an error wrapping ErrNotFound.
	ExplainPlacement(ctx context.Context, name string) (engine.Explanation, error)
}

// WithPlacement tells the registry client the cluster's placement policy and
// at-most-once default (fleet.conf placement=, agent_at_most_once_default),
// which explanations are computed with.
func WithPlacement(p engine.Policy, atMostOnceDefault bool) RegistryOption {
	return func(c *registryClient) { c.policy, c.atMostOnceDefault = p, atMostOnceDefault }
}

// ExplainPlacement reads the whole cluster (engine.LoadScheduler: machines,
// units and their bodies, the schedule, drains) and runs the scheduler over
// it as a new leader would: the answer is what the engine decides, at the
// cost of one full pass.
func (c *registryClient) ExplainPlacement(ctx context.Context, name string) (engine.Explanation, error) {
	if _, err := c.reg.Unit(ctx, name); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return engine.Explanation{}, errorf(ErrNotFound, "unit %s does not exist", name)
		}
		return engine.Explanation{}, err
	}
	s, err := engine.LoadScheduler(ctx, c.reg, c.policy, c.atMostOnceDefault)
	if err != nil {
		return engine.Explanation{}, err
	}
	s.Plan() // what the leader would decide now
	e, ok := s.Explain(name)
	if !ok {
		return engine.Explanation{}, errorf(ErrNotFound, "unit %s was destroyed meanwhile", name)
	}
	return e, nil
}

// ExplainPlacement asks fleetd.
func (c *httpClient) ExplainPlacement(ctx context.Context, name string) (engine.Explanation, error) {
	var e engine.Explanation
	err := c.getJSON(ctx, unitPath(name)+"/placement", nil, &e)
	return e, err
}

func (s *server) unitPlacement(w http.ResponseWriter, r *http.Request) {
	x, ok := s.c.(Explainer)
	if !ok {
		s.sendCode(w, http.StatusNotImplemented, "this fleetd cannot explain placements")
		return
	}
	e, err := x.ExplainPlacement(r.Context(), r.PathValue("name"))
	if err != nil {
		s.sendError(w, r, fmt.Errorf("explain %s: %w", r.PathValue("name"), err))
		return
	}
	s.sendJSON(w, http.StatusOK, e)
}
