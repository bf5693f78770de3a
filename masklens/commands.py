"""``masklens``: one command, a subcommand per stage, each generated from that stage's frozen dataclass config.

    masklens --help                 the subcommands, one line each
    masklens predict --help         one subcommand's flags (every field of its config)

The table below names each subcommand's module by string and imports it only when that subcommand runs,
so ``masklens predict`` and ``masklens video`` load the torch-free runtime alone, and ``masklens --help``
loads nothing. The core package's own modules never import ``training``, ``export`` or ``studies``;
this table is the one place that knows them.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module whose main(argv) runs it, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("masklens.predict", "classify the faces in photos or folders of photos (JSON lines, heatmaps)"),
    "video": ("masklens.video", "follow and classify the faces through a video file, as the webcam mode does"),
    "train": ("training.train", "train a classifier from a preset (--preset NAME; every TrainConfig field a flag)"),
    "sweep": ("training.sweep", "train recipe variants side by side and keep the best on validation"),
    "soup": ("training.soup", "average the weights of checkpoints of one network (a model soup)"),
    "faces": ("training.faces", "crop the faces of the real train photos as the site does, for training"),
    "synth": ("training.synth", "draw a sheet of synthesised masked faces"),
    "eval": ("training.evaluate", "score a checkpoint on a split or a folder: metrics JSON and figures"),
    "export": (
        "export.build",
        "export a checkpoint to ONNX with its Grad-CAM graphs, the face finder and the manifest",
    ),
    "export-detector": ("export.face_detector", "export the MTCNN face finder's three nets to ONNX"),
    "train-detector": ("training.detector", "fine-tune the face finder's R-Net and O-Net on masked faces"),
    "eval-real": ("studies.real_eval", "score the exported graphs end to end on the real photo sets"),
    "calibrate": (
        "studies.calibration",
        'fit the "can\'t tell" rule on held-out real faces and write it into the manifest',
    ),
    "detection-study": ("studies.detection_study", "compare face-finder rules on the real photo sets"),
    "detector-study": (
        "studies.detector_finetune",
        "where the face finder loses masked faces, and found rates with stock against fine-tuned nets",
    ),
    "framing": ("studies.framing", "measure where the face finder boxes the training faces (the crop rule)"),
    "gallery": ("studies.gallery", "draw Grad-CAM heatmaps of holdout faces for the docs"),
    "explain": (
        "studies.explanations",
        "check the heatmaps: pointing game per reason, faithfulness (ROAD), weight randomisation",
    ),
    "benchmark": (
        "studies.benchmark",
        "time the classifier and the photo pipeline (Python, torch, browser), memory and training: the budgets",
    ),
    "live-benchmark": ("studies.live_benchmark", "time the webcam mode in Chromium against onnxruntime in Python"),
    "bad-inputs": ("studies.bad_inputs", "give odd and broken files to the CLI and to the page in Chromium: outcomes"),
    "report": ("studies.report", "render the write-up's templates from the results JSON"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_line}" for name, (_, help_line) in COMMANDS.items()]
    return (
        "usage: masklens COMMAND [flags]   (masklens COMMAND --help: its flags)\n\n"
        "MaskLens: is a mask worn correctly, incorrectly or not at all, and a Grad-CAM heatmap of why.\n\n"
        "commands:\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"masklens: no command {name!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module, _ = COMMANDS[name]
    sys.argv = [f"masklens {name}", *rest]  # argparse names the subcommand in its usage and errors
    importlib.import_module(module).main(rest)
