#!/usr/bin/env bash
# From a finished training run to the committed artifacts: checkpoint, metrics, figures, ONNX models,
# manifest and benchmark. The write-up renders its numbers from these at build time (mkdocs build).
# Usage: scripts/release.sh [runs/default] [runs/paper]
set -euo pipefail
cd "$(dirname "$0")/.."
default_run=${1:-runs/default}
paper_run=${2:-runs/paper}
data=../shared/data
bin=.venv/bin

mkdir -p models results/default
cp "$default_run/model.pt" models/default.pt
cp "$default_run/history.json" "$default_run/config.json" results/default/

evaluate() {  # checkpoint, results folder
  "$bin/masklens-eval" --checkpoint "$1" --split holdout --out-dir "$2"
  "$bin/masklens-eval" --checkpoint "$1" --mask-folder "$data/real-photos/test" --name real-photos --out-dir "$2"
  "$bin/masklens-eval" --checkpoint "$1" --folder "$data/real-video-frames" --name real-video-frames --out-dir "$2"
}
evaluate models/default.pt results/default
if [ -f "$paper_run/model.pt" ]; then
  mkdir -p results/paper
  cp "$paper_run/history.json" "$paper_run/config.json" results/paper/
  evaluate "$paper_run/model.pt" results/paper
fi

"$bin/masklens-export" --checkpoint models/default.pt --out-dir models/onnx
"$bin/masklens-benchmark" --models models/onnx
"$bin/masklens-gallery" --models models/onnx
