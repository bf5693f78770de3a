#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the whole test suite, slow tests included: ruff (lint and
# format, configured in pyproject.toml), the browser modules' unit tests (node --test), then pytest (Python,
# Python vs the browser modules, and the built site in chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
(cd site && npm ci --no-audit --no-fund --loglevel=error && npm test)
# Debian's chromium for the browser tests (tests/test_browser.py); Playwright cannot download its own here.
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q && apt-get install -y -q chromium
fi
.venv/bin/python -m pytest -m "slow or not slow" "$@"
