package agent

import (
	"context"
	"fmt"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// A scheduled unit whose name is already a unit of the host's own (ssh.service
// from /lib/systemd/system, anything in /etc/systemd/system, a masked unit)
// is refused on this machine: fleet's link in /run/systemd/system would
// shadow a /lib unit, and a /etc unit would shadow fleet's, so either way
// someone's unit would silently run in place of the other's. The agent
// writes, links, starts and stops nothing for it, and publishes this state,
// with the reason: list-units shows it as failed/refused. The engine leaves
// the placement alone; the unit runs once the host's unit is gone, or when
// it is renamed.
const (
	refusedLoadState   = "error"
	refusedActiveState = "failed"
	refusedSubState    = "refused"
)

// refuseHostUnit reports whether it's unit must be left alone because it is
// the host's, and then records why in it. It asks systemd only for units
// the agent has not applied yet: a unit it runs is fleet's. An error fails
// the item, which is retried.
func (a *Agent) refuseHostUnit(ctx context.Context, it *item) bool {
	if _, ok := a.applied[it.name]; ok {
		return false
	}
	where, err := a.sd.HostUnit(ctx, it.name)
	if err != nil {
		it.fail(err)
		return true
	}
	was := a.published[it.name].Reason
	if where == "" {
		if was != "" {
			it.log.Info("unit of the host is gone; fleet runs the unit now")
		}
		return false
	}
	it.refused = fmt.Sprintf("refused: this machine has a unit of its own named %s (%s); fleet does not override it", it.name, where)
	if was != it.refused {
		it.log.Warn("unit is the host's own; refusing to run fleet's unit of that name", "host_unit", where)
	}
	return true
}

// refusedState is the state published for a refused unit.
func refusedState(s registry.UnitState, reason string) registry.UnitState {
	s.LoadState, s.ActiveState, s.SubState, s.Reason = refusedLoadState, refusedActiveState, refusedSubState, reason
	return s
}

// forgetHostUnit unloads a unit that is not scheduled here and is the
// host's: it was refused, so systemd's unit is not fleet's to stop, unlink
// or reset. Only fleet's own file and the published state go.
func (a *Agent) forgetHostUnit(ctx context.Context, name string) error {
	if err := a.sd.RemoveUnitFile(name); err != nil {
		return err
	}
	return a.presence.DeleteState(ctx, name)
}
