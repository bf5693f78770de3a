#!/usr/bin/env bash
# From finished training runs to the committed artifacts: checkpoints, metrics, figures, ONNX models,
# manifest and benchmark. The write-up renders its numbers from these at build time (mkdocs build).
# Usage: scripts/release.sh [runs/default] [runs/paper] [runs/real] [runs/real-webcam] [runs/real-prior] [runs/live-student]
#                           [runs/live-student-slim] [runs/real-wear] [runs/real-wear-placements] [runs/real-wear-neck]
#                           [runs/real-wear-neck-food]
# A run folder without model.pt is skipped. The chain of the real models (docs: the Experiments page): runs/real is
# fine-tuned from runs/real-base; runs/real-webcam from models/real.pt; models/real-soup.pt is the mean of
# the weights of real and real-webcam (masklens soup, made here if missing); runs/real-prior is fine-tuned
# from it. Only the shipped checkpoint is committed; git ignores the other models/NAME.pt files this script
# writes (their metrics, under results/, are committed). runs/real-from-default, if present, is the ablation. The site ships the last of
# real-prior, real and default whose checkpoint is in models/; the other real models are evaluated end to
# end too. runs/live-student (distilled from models/real-prior.pt) is the webcam mode's live graph when present,
# runs/live-student-slim (narrowed from models/live-student.pt, distilled the same way) in its place when present.
# runs/real-wear (live-student-slim fine-tuned on real incorrect wear) ships for photos and webcam alike when present,
# its "can't tell" rule fitted by masklens calibrate. runs/real-wear-placements (real-wear fine-tuned with the
# real-wear placement mix) is evaluated beside it, not shipped (the Experiments page says why). runs/real-wear-neck
# (the same recipe for a face crop grown below the chin, results/framing-neck.json, on build/faces-neck) ships in
# real-wear's place when present; runs/real-wear-neck-food (from it, food among the things that are not masks) is
# evaluated beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
default_run=${1:-runs/default}
paper_run=${2:-runs/paper}
real_run=${3:-runs/real}
webcam_run=${4:-runs/real-webcam}
prior_run=${5:-runs/real-prior}
student_run=${6:-runs/live-student}
slim_run=${7:-runs/live-student-slim}
wear_run=${8:-runs/real-wear}
placements_run=${9:-runs/real-wear-placements}
neck_run=${10:-runs/real-wear-neck}
food_run=${11:-runs/real-wear-neck-food}
data=../shared/data
bin=.venv/bin

evaluate() {  # checkpoint, results folder, masklens eval flags
  "$bin/masklens" eval --checkpoint "$1" --split holdout --out-dir "$2" "${@:3}"
  "$bin/masklens" eval --checkpoint "$1" --mask-folder "$data/real-photos/test" --name real-photos --out-dir "$2" "${@:3}"
  "$bin/masklens" eval --checkpoint "$1" --folder "$data/real-video-frames" --name real-video-frames --out-dir "$2" "${@:3}"
}
take() {  # run folder, name, masklens eval flags: copies the run's model and logs, evaluates it
  mkdir -p models "results/$2"
  cp "$1/model.pt" "models/$2.pt"
  cp "$1/history.json" "$1/config.json" "results/$2/"
  evaluate "models/$2.pt" "results/$2" "${@:3}"
}
assess() {  # run folder, name: the run's logs and evaluation, its weights left in the run folder
  mkdir -p "results/$2"
  cp "$1/history.json" "$1/config.json" "results/$2/"
  evaluate "$1/model.pt" "results/$2"
}
[ -f "$default_run/model.pt" ] && take "$default_run" default
[ -f "$paper_run/model.pt" ] && take "$paper_run" paper
[ -f "$real_run/model.pt" ] && take "$real_run" real
if [ -f "$webcam_run/model.pt" ] && [ -f models/real.pt ]; then
  assess "$webcam_run" real-webcam
  # Kept when present: real-prior names its start by this file's sha256.
  [ -f models/real-soup.pt ] || "$bin/masklens" soup --checkpoints models/real.pt "$webcam_run/model.pt" \
    --out models/real-soup.pt
  mkdir -p results/real-soup
  evaluate models/real-soup.pt results/real-soup
fi
[ -f "$prior_run/model.pt" ] && take "$prior_run" real-prior
[ -f "$student_run/model.pt" ] && take "$student_run" live-student
[ -f "$slim_run/model.pt" ] && take "$slim_run" live-student-slim
[ -f "$wear_run/model.pt" ] && take "$wear_run" real-wear
[ -f "$placements_run/model.pt" ] && assess "$placements_run" real-wear-placements
# The shipped model answers with the mean over each face and its mirror image (masklens export's default).
[ -f "$neck_run/model.pt" ] && take "$neck_run" real-wear-neck --mirror-average true
[ -f "$food_run/model.pt" ] && assess "$food_run" real-wear-neck-food

"$bin/masklens" export-detector --out-dir build/detector
# The face finder's second look: R-Net and O-Net fine-tuned on masked faces (committed; made here if missing).
[ -f models/mtcnn-masked.pt ] || "$bin/masklens" train-detector --models build/detector --out models/mtcnn-masked.pt
"$bin/masklens" framing --models build/detector --out results/framing.json
"$bin/masklens" framing --models build/detector --side 2.0 --out results/framing-neck.json
"$bin/masklens" detection-study --models build/detector --out results/detection.json

# Before: the MaskedFace-Net-only model through the same face finder, end to end.
if [ -f models/default.pt ]; then
  "$bin/masklens" export --checkpoint models/default.pt --out-dir build/onnx-default --weights fp32 --mirror-average false
  "$bin/masklens" eval-real --models build/onnx-default --out results/default/metrics-end-to-end.json
fi

shipped=default
for preset in real real-prior real-wear real-wear-neck; do
  [ -f "models/$preset.pt" ] && shipped=$preset
done
# The real models not shipped, end to end through the same face finder.
for entry in real:models/real.pt "real-webcam:$webcam_run/model.pt" real-soup:models/real-soup.pt \
             real-prior:models/real-prior.pt live-student:models/live-student.pt \
             live-student-slim:models/live-student-slim.pt real-wear:models/real-wear.pt \
             "real-wear-placements:$placements_run/model.pt" "real-wear-neck-food:$food_run/model.pt"; do
  preset=${entry%%:*} checkpoint=${entry#*:}
  [ -f "$checkpoint" ] && [ "$preset" != "$shipped" ] || continue
  "$bin/masklens" export --checkpoint "$checkpoint" --out-dir "build/onnx-$preset" --weights fp32 --mirror-average false
  "$bin/masklens" eval-real --models "build/onnx-$preset" --out "results/$preset/metrics-end-to-end.json"
done
keep=()  # the committed classifier.onnx stays byte for byte if this export reproduces it
[ -f models/onnx/classifier.onnx ] && keep=(--keep models/onnx/classifier.onnx)
live=()  # the webcam mode runs the student distilled from the shipped model, when there is one
for student in live-student live-student-slim; do  # the last present: the slim one narrows the first
  if [ "$shipped" = real-prior ] && [ -f "models/$student.pt" ]; then live=(--live-checkpoint "models/$student.pt"); fi
done
"$bin/masklens" export --checkpoint "models/$shipped.pt" --out-dir models/onnx \
  --metrics "results/$shipped/metrics-holdout.json" --second-look-weights models/mtcnn-masked.pt "${keep[@]}" "${live[@]}"
printf '{\n  "preset": "%s"\n}\n' "$shipped" > results/shipped.json
# The "can't tell" rule, fitted on the real faces the shipped run held out (its faces_index: build/faces or
# build/faces-neck, from masklens faces).
case $shipped in real-wear*) "$bin/masklens" calibrate --models models/onnx ;; esac
[ "$shipped" = default ] || "$bin/masklens" eval-real --models models/onnx --out "results/$shipped/metrics-end-to-end.json"
# The shipped checkpoint with one look (no mirror image), for the Results page's comparison.
if [ "$shipped" = real-wear-neck ]; then
  "$bin/masklens" eval --checkpoint "models/$shipped.pt" --split holdout --name holdout-one-look \
    --out-dir "results/$shipped" --figures false
  "$bin/masklens" export --checkpoint "models/$shipped.pt" --out-dir build/onnx-one-look --mirror-average false \
    --metrics "results/$shipped/metrics-holdout-one-look.json" --second-look-weights models/mtcnn-masked.pt \
    --compression-report build/onnx-one-look/compression.json
  "$bin/masklens" calibrate --models build/onnx-one-look --out build/onnx-one-look/calibration.json \
    --figure build/onnx-one-look/reliability.png
  "$bin/masklens" eval-real --models build/onnx-one-look --out "results/$shipped/metrics-end-to-end-one-look.json"
fi
"$bin/masklens" synth --faces build/faces-neck/index.json
"$bin/masklens" benchmark --models models/onnx
# Ablation: the real recipe started from the flips-only default (runs/real-from-default), evaluated alike.
ablation=runs/real-from-default
if [ -f "$ablation/model.pt" ]; then
  "$bin/masklens" eval --checkpoint "$ablation/model.pt" --split holdout --out-dir build/ablation --figures false
  "$bin/masklens" export --checkpoint "$ablation/model.pt" --out-dir build/onnx-ablation --weights fp32
  "$bin/masklens" eval-real --models build/onnx-ablation --out build/ablation/metrics-end-to-end.json
  mkdir -p results/ablations
  "$bin/python" - "$ablation" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
holdout = json.loads(Path("build/ablation/metrics-holdout.json").read_text())
payload = {"what": "the real preset's recipe started from the flips-only default instead of real-base; "
                   "evaluated, not shipped (weights not committed)",
           "init_from": holdout["checkpoint"]["init_from"],
           "history": json.loads((run / "history.json").read_text())["history"], "holdout": holdout,
           "end-to-end": json.loads(Path("build/ablation/metrics-end-to-end.json").read_text())}
Path("results/ablations/real-from-default.json").write_text(json.dumps(payload, indent=2) + "\n")
PY
fi
"$bin/masklens" gallery --models models/onnx --metrics "results/$shipped/metrics-holdout.json" --out-dir "results/$shipped"
