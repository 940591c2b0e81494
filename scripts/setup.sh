#!/bin/bash
# Installs what Rosetta needs on a Debian 12 machine and prepares this checkout:
# system packages, a virtualenv, the built-in images, the database, the demo catalogue.
# Idempotent and quick when nothing changed. Usage: scripts/setup.sh [--for-tests]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    podman runc catatonit uidmap slirp4netns   # the container engine (--init needs catatonit)
    busybox-static                             # the root filesystem of the `hello` image
    libnss-myhostname                          # lets every program resolve *.localhost (task origins)
    python3 python3-venv python3-dev gcc       # the platform itself
    ca-certificates curl
)
TEST_PACKAGES=(
    chromium                                   # the browser test drives Debian's Chromium
    postgresql                                 # the platform is also tested on PostgreSQL
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
install_packages "${packages[@]}"

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

.venv/bin/rosetta build-image hello
# Tests make their own instances; only a real set-up gets the database, admin and demo catalogue.
[ "${1:-}" = "--for-tests" ] || .venv/bin/rosetta setup
