# fleet: build, test, demo. Run as root on Debian 12 for test/demo (they boot
# systemd-nspawn hosts and install the packages they need).
GO        ?= go
# Semantic versions: the VERSION file's on its release tag (v$(RELEASE)),
# else a pre-release of it with git describe as build metadata
# (0.2.0-dev+v0.1.0-5-g3146401-dirty), which still parses as semver: an
# engine never records a version that does not (a bare commit hash).
RELEASE   := $(shell cat VERSION)
DESCRIBE  := $(shell git describe --tags --always --dirty 2>/dev/null | tr -c '0-9A-Za-z.\n-' '-')
VERSION   ?= $(if $(filter v$(RELEASE),$(shell git describe --tags --exact-match --dirty 2>/dev/null)),$(RELEASE),$(RELEASE)-dev$(if $(DESCRIBE),+$(DESCRIBE)))
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin
export CGO_ENABLED := 0

.PHONY: all build version test functional chaos lint demo demo-down deps clean bench bench-quick deb

all: build

version:
	@echo $(VERSION)

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/fleetd ./cmd/fleetd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/fleetctl ./cmd/fleetctl

deps:
	scripts/install-deps.sh

# The Debian package $(BIN)/fleet_<version>_amd64.deb (internal/debpkg:
# binaries, units, /etc/fleet/fleet.conf, man pages generated from the code,
# completion, maintainer scripts of dist/debian), dated by the last commit,
# then linted: dpkg-deb reads it back and lintian's errors and warnings fail
# (overrides, with reasons, in dist/debian/lintian-overrides).
DEB_MAINTAINER    ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
deb: build
	$(GO) build -o $(BIN)/fleet-deb ./cmd/fleet-deb
	rm -f $(BIN)/fleet_*.deb
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN)/fleet-deb -version '$(VERSION)' -bin $(BIN) -dist dist -out $(BIN) -maintainer '$(DEB_MAINTAINER)'
	dpkg-deb --info $(BIN)/fleet_*.deb
	dpkg-deb --contents $(BIN)/fleet_*.deb
	@command -v lintian >/dev/null || { echo "make deb: lintian is needed (make deps, or apt-get install lintian)" >&2; exit 1; }
	lintian --fail-on error,warning $(BIN)/fleet_*.deb

# Everything: unit tests, tests against embedded etcd, agent tests and the
# end-to-end tests on real systemd hosts (TestDebPackage installs the .deb
# of `make deb` on one). Fuzz seed corpora run as tests.
test: deps lint build deb
	$(GO) test -count=1 -timeout 30m -p 2 ./...

# End-to-end scenarios on real hosts (root, Debian 12); -v prints the figures
# they measure (failover, takeover, time to active). `make test` runs them too.
functional: deps build
	$(GO) test -count=1 -timeout 20m -v ./functional/...

# The long chaos run (root, Debian 12): 5 hosts, a 3-member etcd, 50 units,
# CHAOS_ROUNDS rounds of random faults (etcd down CHAOS_ETCD_OUTAGE at a
# time, agent_ttl CHAOS_TTL) with an operator's drains, undrains, mv, reboots
# and rolling updates amid them; prints the seed, faults, violations and worst
# convergence. `make test` runs a short one with a fixed seed. Replay: make
# chaos CHAOS_SEED=<seed>.
CHAOS_SEED        ?= random
CHAOS_ROUNDS      ?= 12
CHAOS_ETCD_OUTAGE ?= 20s
CHAOS_TTL         ?= 5s
chaos: deps build
	FLEET_CHAOS_SEED=$(CHAOS_SEED) FLEET_CHAOS_ROUNDS=$(CHAOS_ROUNDS) FLEET_CHAOS_ETCD_OUTAGE=$(CHAOS_ETCD_OUTAGE) FLEET_CHAOS_TTL=$(CHAOS_TTL) \
	  $(GO) test -count=1 -timeout 60m -v -run '^TestChaos$$' ./functional/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^vendor/')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

demo: deps build
	scripts/demo.sh up

demo-down:
	scripts/demo.sh down

# Go benchmarks (scheduler, engine on a real etcd, bench helpers, the dashboard
# loading 10,000 units in headless Chromium), then 1,000
# and 10,000 simulated machines on a real etcd and real engines, then the
# bulk start on 3 and 10 real hosts against systemd alone, then the
# real-systemd figures on 3 hosts (root); rewrites BENCHMARKS.md. ~18 min.
bench: deps build
	$(GO) test ./engine/ -run '^$$' -bench 'BenchmarkSchedule' -benchmem -count 3
	$(GO) test ./engine/ -run '^$$' -bench 'BenchmarkEngine' -benchtime 1x -count 1
	$(GO) test -run '^$$' -bench . -benchtime 200x ./bench
	$(GO) test -run '^$$' -bench DashboardLoad10k -benchtime 5x ./ui
	$(GO) build -o $(BIN)/fleet-bench ./cmd/fleet-bench
	$(BIN)/fleet-bench -mode=full -out=BENCHMARKS.md -save=$(BIN)/bench-figures.json

# 200 machines x 2,000 units, and (as root) 100 units started on 3 real
# hosts beside systemd alone; prints only (about 2 minutes).
bench-quick:
	$(GO) build -o $(BIN)/fleet-bench ./cmd/fleet-bench
	$(BIN)/fleet-bench -mode=quick

clean:
	rm -rf $(BIN)
