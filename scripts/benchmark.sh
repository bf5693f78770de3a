#!/usr/bin/env bash
# Sets everything up, builds the site and measures the budgets into results/benchmark.json (masklens
# benchmark: the classifier per face against the compute floor, a 12-megapixel photo in the browser, what a
# visit downloads, peak memory, training throughput). Extra arguments go to masklens benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
(cd site && npm ci --no-audit --no-fund --loglevel=error)
# Debian's chromium for the browser measurements; Playwright cannot download its own here.
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q && apt-get install -y -q chromium
fi
.venv/bin/python scripts/build_site.py
.venv/bin/masklens benchmark --site build/site "$@"
