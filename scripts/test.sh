#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the whole test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pytest -m "slow or not slow" "$@"
