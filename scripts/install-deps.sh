#!/bin/bash
# install-deps.sh - install the Debian 12 packages fleet's tests and demo need. Idempotent; run as root.
#
#   etcd-server etcd-client   etcd for tests and the demo
#   systemd-container         systemd-nspawn: the simulated hosts of internal/hosts
#   debootstrap               builds the hosts' root file system
#   docker.io                 dockerd + /usr/bin/docker for units that run containers
#   iproute2 bc iputils-ping  bridge/netns set-up, timings, reachability checks
#   lintian groff-base        make deb lints the package; the man page test renders the pages
#   chromium                  headless browser of the dashboard's tests (ui/, functional TestUI)
#
# Only missing packages are installed. /usr/sbin/policy-rc.d (exit 101) keeps the packages' init scripts
# from starting etcd or docker at install time; it is removed again only if this script created it.
set -euo pipefail

PACKAGES=(etcd-server etcd-client systemd-container debootstrap docker.io iproute2 bc iputils-ping lintian groff-base)
PACKAGES+=(chromium)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all packages present"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
