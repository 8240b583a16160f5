package api

import (
	"context"
	"errors"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// UnitBatchCreator creates many new units at once, as CreateUnit would each
// (an extension beside fleet's API, which has no batch): the registry client
// writes them 63 to an etcd transaction, so a bulk submission costs a write
// per 63 units instead of one per unit. fleetctl uses it when its client
// has it (--driver=etcd).
type UnitBatchCreator interface {
	// CreateUnits returns one result per unit, in order: its warnings, or
	// why it was not created (ErrExists when a unit of that name exists).
	CreateUnits(ctx context.Context, us []*Unit) []CreateResult
}

// CreateResult is what CreateUnits says of one unit.
type CreateResult struct {
	Warnings []string
	Err      error
}

var _ UnitBatchCreator = (*registryClient)(nil)

func (c *registryClient) CreateUnits(ctx context.Context, us []*Unit) []CreateResult {
	out := make([]CreateResult, len(us))
	var news []registry.NewUnit
	var at []int
	seen := make(map[string]bool, len(us))
	for i, u := range us {
		rec, body, warnings, err := c.prepare(ctx, u, false)
		if err == nil && seen[rec.Name] {
			err = errorf(ErrExists, "unit %s already exists: it is given twice", rec.Name)
		}
		out[i] = CreateResult{Warnings: warnings, Err: err}
		if err != nil {
			continue
		}
		seen[rec.Name] = true
		news = append(news, registry.NewUnit{Unit: rec, Body: body})
		at = append(at, i)
	}
	for j, err := range c.reg.CreateUnits(ctx, news) {
		i := at[j]
		switch {
		case errors.Is(err, registry.ErrExists):
			out[i] = CreateResult{Err: errorf(ErrExists, "unit %s already exists", us[i].Name)}
		case err != nil:
			out[i] = CreateResult{Err: err}
		}
	}
	return out
}
