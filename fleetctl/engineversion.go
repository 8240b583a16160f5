package fleetctl

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// resetEngineVersionCommand clears the record of the newest engine version
// that led the cluster. An engine older than the record never leads, so a
// wrong record (a test build with a made-up version, a rollback to an older
// release) leaves the cluster without a scheduler; clearing it lets the
// next engine to lead record its own version.
func (a *app) resetEngineVersionCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "reset-engine-version",
		Short: "Clear the recorded cluster engine version (with --driver=etcd)",
		Long: `Clear the recorded cluster engine version (etcd key <prefix>engine/version).

An engine whose version is older than the newest version that ever led the
cluster never leads. When that record is wrong (a build with a made-up
version led, or the cluster was rolled back to an older release on purpose),
no engine schedules; clear the record and the next engine to lead records
its own version.

It talks to etcd directly (--driver=etcd). It refuses while any engine leads
or campaigns, since the record is then most likely that engine's, rightly:
stop fleetd on the machines whose engine is newer (or set disable_engine),
or pass --force to clear it anyway.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, release, err := a.etcdRegistry()
			if err != nil {
				return err
			}
			defer release()
			ctx := cmd.Context()
			v, err := reg.ClearEngineVersion(ctx, force)
			if errors.Is(err, registry.ErrEngineRunning) {
				return fmt.Errorf("%w; pass --force to clear it while engines run", err)
			}
			if err != nil {
				return a.explain(err)
			}
			if v == "" {
				_, err = fmt.Fprintln(a.stdout, "No engine version is recorded.")
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "Cleared the cluster engine version %s; the next engine to lead records its own.\n", v)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "clear it even while an engine leads or campaigns")
	return cmd
}

// etcdRegistry connects to etcd as the global flags say, for the commands
// that work on etcd only. The returned func closes the connection.
func (a *app) etcdRegistry() (*registry.Registry, func(), error) {
	if a.driver.value != driverEtcd {
		return nil, nil, usageErrorf("this command talks to etcd directly: give --driver=etcd and --endpoint with etcd's client URLs")
	}
	if a.tunnel != "" {
		return nil, nil, usageErrorf("this command does not go through --tunnel: run it on a cluster machine")
	}
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	return a.dialEtcd(tlsCfg, nil)
}
