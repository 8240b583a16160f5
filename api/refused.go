package api

import (
	"context"
	"fmt"
	"io"
)

// RefusingInspector wraps the local machine's Inspector for units its
// agent refuses to run because a unit of the host's own has the name
// (their published state carries a Reason): Status answers with the reason
// instead of systemctl's status of the host's unit, and Journal refuses
// with it, rather than show the host's unit as if it were fleet's. Other
// units go to insp. c reads the machine's published states.
func RefusingInspector(insp Inspector, c Client, machineID string) Inspector {
	return refusingInspector{insp: insp, c: c, machine: machineID}
}

type refusingInspector struct {
	insp    Inspector
	c       Client
	machine string
}

// refused returns why this machine's agent refuses unit name, or "".
func (r refusingInspector) refused(ctx context.Context, name string) (string, error) {
	states, err := r.c.UnitStates(ctx, StateFilter{MachineIDs: []string{r.machine}, UnitNames: []string{name}})
	if err != nil {
		return "", fmt.Errorf("read the state of %s: %w", name, err)
	}
	for _, s := range states {
		if s.Name == name && s.Reason != "" {
			return fmt.Sprintf("%s on machine %s: %s", name, r.machine, s.Reason), nil
		}
	}
	return "", nil
}

func (r refusingInspector) Status(ctx context.Context, name string) (string, error) {
	why, err := r.refused(ctx, name)
	if err != nil {
		return "", err
	}
	if why != "" {
		return why + "\n", nil
	}
	return r.insp.Status(ctx, name)
}

func (r refusingInspector) Journal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error) {
	why, err := r.refused(ctx, name)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, errorf(ErrConflict, "%s; the journal of that name is the host's unit's", why)
	}
	return r.insp.Journal(ctx, name, opts)
}
