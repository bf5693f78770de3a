#!/usr/bin/env bash
# Creates .venv with what the project needs, pinned. Safe to re-run: pip skips what is present.
#   scripts/setup.sh        everything: training, export, tests, docs
#   scripts/setup.sh site   only what building and serving the site needs (no torch)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip==26.3
if [ "${1:-all}" = site ]; then
  .venv/bin/pip install -q -e ".[docs]"
  exit 0
fi
# torch and torchvision first: these exact releases are on this machine's disk (other versions download GBs).
.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
# facenet-pytorch 2.6.0 pins torch<2.3; its code runs on the torch above, and its MTCNN weights ship in the wheel.
.venv/bin/pip install -q --no-deps facenet-pytorch==2.6.0
.venv/bin/pip install -q -e ".[torch,export,test,docs]"
