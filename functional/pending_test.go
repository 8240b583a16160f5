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
	featRestart       = "fleetctl restart"
	featPatchMachines = "PATCH /fleet/v1/machines (machine metadata add/replace/remove)"
	featReplaces      = "[X-Fleet] Replaces= in the engine"
	featHelpVersion   = "fleetctl help shows fleetctl's version, as fleet's did"
	featWantedBy      = "the agent enables units' [Install] section (WantedBy=), as fleet's did"
	// unit/ validates a template with %i expanded to "", so
	// MachineMetadata=hostname=%i is refused ("hostname=" is not key=value).
	featTemplateSpecifiers = "a template whose [X-Fleet] values use %i can be submitted, as in fleet"

	// Seen here: once the whole etcd cluster is back after 30 s, agents
	// register again only after their backoff (up to 10 s), with new
	// leases, and the engine, leading again at once, re-places units on the
	// machines that are back first: units stop and move.
	bugEtcdOutage = "units survive a whole-etcd-cluster outage without stopping or moving"
	// Seen here: a host cut off longer than agent_ttl registers again with
	// a new lease once back; the engine dropped its placements meanwhile,
	// so its agent stops its pinned and global units, and starts them again
	// a moment later when the engine places them back.
	bugReconnectFlap = "a host back from a network cut longer than agent_ttl keeps its pinned and global units running"
)

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
