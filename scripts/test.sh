#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the whole test suite, slow tests included:
# the browser modules' unit tests (node --test), then pytest (Python, and Python vs the browser modules).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd site && npm ci --no-audit --no-fund --loglevel=error && npm test)
.venv/bin/python -m pytest -m "slow or not slow" "$@"
