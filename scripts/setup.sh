#!/bin/bash
# Installs what Rosetta needs on a Debian 12 machine and prepares this checkout:
# system packages, a virtualenv, the built-in images, the database, the demo catalogue.
# Idempotent and quick when nothing changed. Usage: scripts/setup.sh [--for-tests]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    podman runc catatonit uidmap slirp4netns   # the container engine (--init needs catatonit)
    netavark                                   # task networks: podman's CNI backend slows with every network that exists
    iptables iproute2                          # the boundary around tasks (rosetta.computing.firewall)
    busybox-static                             # the root filesystem of the `hello` image
    docker-registry skopeo                     # the platform's registry; copies images into it
    libnss-myhostname                          # lets every program resolve *.localhost (task origins)
    python3 python3-venv python3-dev gcc       # the platform itself
    ca-certificates curl
)
TEST_PACKAGES=(
    chromium                                   # the browser test drives Debian's Chromium
    postgresql                                 # the platform is also tested on PostgreSQL
    openssh-client xvfb xauth                  # the SSH front door is tested with ssh -J, scp, sftp, ssh -X
)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "Installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

packages=("${PACKAGES[@]}")
extras=""
if [ "${1:-}" = "--for-tests" ]; then
    packages+=("${TEST_PACKAGES[@]}")
    extras="[test]"
fi
registry_was_installed=$(dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -c "ok installed" || true)
install_packages "${packages[@]}"
# Servers the tests start themselves: nginx (TLS in front of the gateway, docs/deployment.md) and
# Prometheus (scrapes /metrics). Only their programs are needed: Debian's own services must not
# start (nginx's site on port 80 would fail where another server holds it), so services are
# refused while they are installed, and stay disabled.
install_without_starting() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ -e /usr/sbin/policy-rc.d ]; then
        install_packages "${missing[@]}"
    else
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        install_packages "${missing[@]}" || { as_root rm -f /usr/sbin/policy-rc.d; exit 1; }
        as_root rm -f /usr/sbin/policy-rc.d
    fi
    for package in "${missing[@]}"; do
        if command -v systemctl >/dev/null; then
            as_root systemctl disable "$package" >/dev/null 2>&1 || true
        else
            as_root update-rc.d "$package" disable >/dev/null 2>&1 || true
        fi
    done
}
[ "${1:-}" != "--for-tests" ] || install_without_starting nginx prometheus
# Rosetta runs its own registry (`rosetta registry`, under ROSETTA_HOME). Where installing the
# package just started Debian's own registry service, stop and disable that one: it would hold
# port 5000 on every address for nothing.
if [ "$registry_was_installed" = 0 ]; then
    if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
        as_root systemctl disable --now docker-registry
    elif [ -f /var/run/docker-registry.pid ] && as_root /etc/init.d/docker-registry status >/dev/null 2>&1; then
        as_root /etc/init.d/docker-registry stop >/dev/null
        as_root update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
fi

# Root in a task is not root here: podman gives each task its own range of ids (--userns=auto)
# from the subordinate ids of the user "containers". Add them once.
for ids in /etc/subuid /etc/subgid; do
    grep -q '^containers:' "$ids" 2>/dev/null || echo 'containers:2147483647:2147483648' | as_root tee -a "$ids" >/dev/null
done
# Users' builds run in host ids from 400000000 (ROSETTA_BUILD_ID_BASE, rosetta.builds):
# reserved here, so that no account is given them.
for ids in /etc/subuid /etc/subgid; do
    grep -q '^rosetta-builds:' "$ids" 2>/dev/null || echo 'rosetta-builds:400000000:65536' | as_root tee -a "$ids" >/dev/null
done
# Users' tasks that mount storages run in ranges of host ids of their own, from one region
# (ROSETTA_STORAGE_ID_BASE, ROSETTA_STORAGE_ID_COUNT; rosetta.storage.ids): reserved here too. By
# default it ends where the automatic ranges above begin: 17,509 users.
storage_ids="rosetta-storage:${ROSETTA_STORAGE_ID_BASE:-1000000000}:${ROSETTA_STORAGE_ID_COUNT:-1147469824}"
for ids in /etc/subuid /etc/subgid; do
    grep -q '^rosetta-storage:' "$ids" 2>/dev/null || echo "$storage_ids" | as_root tee -a "$ids" >/dev/null
done

# Debian's Python, not whatever else is first on PATH: the venv must outlive other toolchains.
python=/usr/bin/python3
stamp=".venv/.installed$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".$extras"
    rm -f .venv/.installed*
    touch "$stamp"
fi

# The built-in environments (images/): the demo catalogue offers them all, and tests use them all;
# and the builder, inside which users' Containerfiles are built (rosetta.builds).
# Unchanged images are not rebuilt; the first build bootstraps the Debian base (a few minutes).
for image in hello jupyterlab desktop ssh builder; do
    .venv/bin/rosetta build-image "$image"
done
# Tests make their own instances; only a real set-up gets the database, admin and demo catalogue.
[ "${1:-}" = "--for-tests" ] || .venv/bin/rosetta setup
