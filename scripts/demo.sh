#!/bin/bash
# Set everything up on a fresh Debian machine and run Rosetta at http://localhost:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/rosetta run --port "${ROSETTA_PORT:-8000}"
