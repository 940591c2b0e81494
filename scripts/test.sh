#!/bin/bash
# Set everything up on a fresh Debian machine and run the whole test suite
# (unit, integration against real podman, end-to-end in Debian's Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --for-tests
testbed/up > /dev/null                     # SSH hosts, a docker host and a Slurm cluster, for remote tests
.venv/bin/ruff check --quiet .            # lint, then formatting: both must be clean
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest "$@"
