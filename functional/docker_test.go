package functional

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// TestDockerInHost runs Docker-wrapped units on hosts that each run their
// own dockerd, so that a host's death takes its containers with it.
func TestDockerInHost(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerInHost,
		conf: map[string]string{"agent_ttl": fmt.Sprint(agentTTL.Seconds())}})
	ctx := e.ctx

	t.Run("a Docker-wrapped unit moves to another host when its host dies, and its container runs there", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "docker-hello.service", helloUnit)
		start := time.Now()
		e.fleetctl(t, obs, "start", unit("docker-hello.service"))
		victim := e.unitOn(t, "docker-hello.service")
		container := "hello-" + victim.MachineID
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool { return containerRuns(ctx, victim, container) }),
			"container %s runs in %s's dockerd", container, victim.Name)
		figure(t, "docker unit: start -> container runs", time.Since(start), "dockerd in the host")
		pid := containerPID(t, e, victim, container)

		require.NoError(t, victim.Kill())
		killed := time.Now()
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		require.ErrorIs(t, err, os.ErrNotExist, "the container (PID %d on the machine) died with its host", pid)
		p, err := e.api(t, victim).WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
			on := p.On("docker-hello.service")
			return on != "" && on != victim.MachineID
		})
		require.NoError(t, err)
		other := e.byID(t, p.On("docker-hello.service"))
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool { return containerRuns(ctx, other, "hello-"+other.MachineID) }),
			"the container runs in %s's dockerd", other.Name)
		figure(t, "docker failover: host killed -> container runs elsewhere", time.Since(killed), fmt.Sprintf("agent_ttl %s", agentTTL))
		out := e.sh(t, other, "docker", "ps", "-q")
		require.Len(t, strings.Fields(out), 1, "one container on %s", other.Name)
	})
}

// containerPID returns the machine-side PID of the main process of
// container name in h's dockerd: the process in h's cgroups whose PID in h's
// PID namespace is the one docker reports.
func containerPID(t *testing.T, e *env, h *hosts.Host, name string) int {
	t.Helper()
	inHost := e.sh(t, h, "docker", "inspect", "-f", "{{.State.Pid}}", name)
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, p := range procs {
		status, err := os.ReadFile("/proc/" + p.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			// NSpid: <machine PID> <PID in the host> <PID in the container>
			if f := strings.Fields(line); len(f) >= 4 && f[0] == "NSpid:" && f[2] == inHost {
				cg, _ := os.ReadFile("/proc/" + p.Name() + "/cgroup")
				if strings.Contains(string(cg), "/fleet-hosts/"+h.Name+"/") {
					pid, err := strconv.Atoi(f[1])
					require.NoError(t, err)
					return pid
				}
			}
		}
	}
	t.Fatalf("container %s of %s (PID %s there) not found on the machine", name, h.Name, inHost)
	return 0
}
