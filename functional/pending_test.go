package functional

import (
	"os"
	"testing"
)

// What some scenarios need that fleet does not have, or does not do right,
// yet: features being built, and bugs this suite found. Each such scenario,
// written against fleet's documented behaviour, calls needs(t, ...): while
// one of its needs is listed in pending it is skipped, saying why.
//
// This is the one place to enable them: delete a line from pending once the
// feature has landed or the bug is fixed. FLEET_FUNCTIONAL_PENDING=run runs
// the pending scenarios anyway, to try them before that.
const (
	featRestart            = "fleetctl restart"
	featPatchMachines      = "PATCH /fleet/v1/machines (machine metadata add/replace/remove)"
	featReplaces           = "[X-Fleet] Replaces= in the engine"
	featHelpVersion        = "fleetctl help shows fleetctl's version, as fleet's did"
	featWantedBy           = "the agent enables units' [Install] section (WantedBy=), as fleet's did"
	featTemplateSpecifiers = "a template whose [X-Fleet] values use %i can be submitted, as in fleet"

	// Fixed: agents now retry registration well within agent_ttl and the
	// etcd client reconnects within a second, so they adopt their leases.
	bugEtcdOutage = "units survive a whole-etcd-cluster outage without stopping or moving"
	// Fixed: the engine keeps the placements of global and MachineID-pinned
	// units on an absent machine, so a returning host finds them unchanged.
	bugReconnectFlap = "a host back from a network cut longer than agent_ttl keeps its pinned and global units running"
)

// pending lists what is not done yet; empty: every scenario runs.
var pending = map[string]bool{}

// needs skips t while one of features is pending, unless
// FLEET_FUNCTIONAL_PENDING=run.
func needs(t *testing.T, features ...string) {
	t.Helper()
	if os.Getenv("FLEET_FUNCTIONAL_PENDING") == "run" {
		return
	}
	for _, f := range features {
		if pending[f] {
			t.Skipf("needs %s: pending (functional/pending_test.go)", f)
		}
	}
}
