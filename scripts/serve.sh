#!/usr/bin/env bash
# Sets everything up, builds the complete site (write-up + app + models) and serves it locally:
#   scripts/serve.sh [--models models/onnx]   ->   http://127.0.0.1:8000  (the app: /app/)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh site
(cd site && npm ci --no-audit --no-fund --loglevel=error)
.venv/bin/python scripts/build_site.py "$@"
echo "serving build/site at http://127.0.0.1:8000 (the app: http://127.0.0.1:8000/app/); Ctrl+C stops"
exec .venv/bin/python -m http.server --bind 127.0.0.1 8000 -d build/site
