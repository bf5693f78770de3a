import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from masklens.cli import parse_config
from masklens.labels import CLASSES
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import PRESETS, TrainConfig
from training.data import index_split
from training.evaluate import EvalConfig, evaluate, predict_samples
from training.train import train

from .conftest import REPO, make_tree, shared_data_or_skip

# The real network at its smallest workable input: 80 px still leaves mixed_7a a 1 x 1 map.
TINY = dict(image_size=80, batch_size=12, num_workers=0, validate=False, channels_last=False)


def test_cli_presets_and_overrides():
    config = parse_config(TrainConfig, ["--preset", "paper", "--epochs", "1", "--bf16", "false"], PRESETS)
    assert config == dataclasses.replace(PRESETS["paper"], epochs=1, bf16=False)
    assert (config.image_size, config.optimizer, config.lr, config.augment) == (256, "adam", 0.009, "none")
    assert parse_config(TrainConfig, [], PRESETS) == PRESETS["default"]


def test_overfits_a_dozen_images(tmp_path):
    """The real model must learn 12 generated images (4 per class) to 100%: training really updates it."""
    data = make_tree(tmp_path / "data", per_class=4)
    # Batches of 4: enough optimiser steps for batch norm's running statistics to settle for eval mode.
    config = TrainConfig(
        data_root=str(data),
        out_dir=str(tmp_path / "run"),
        epochs=25,
        lr=1e-3,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
        dropout=0.0,
        augment="none",
        **{**TINY, "batch_size": 4},
    )
    model_path = train(config)
    checkpoint = load_checkpoint(model_path)
    model = model_from_checkpoint(checkpoint)
    probs, _ = predict_samples(model, index_split(data, "train").samples, batch_size=12)
    labels = np.repeat(np.arange(len(CLASSES)), 4)
    assert (probs.argmax(1) == labels).all(), probs
    assert checkpoint["history"][-1]["train_loss"] < checkpoint["history"][0]["train_loss"]
    assert checkpoint["model"]["backbone.logits.weight"].dtype == torch.float16
    assert checkpoint["classes"] == list(CLASSES)
    assert checkpoint["data"]["train"]["fingerprint"] == index_split(data, "train").fingerprint()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 25


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    data = make_tree(tmp_path / "data", per_class=4)
    base = TrainConfig(data_root=str(data), epochs=2, augment="standard", **{**TINY, "batch_size": 6})
    straight = load_checkpoint(train(dataclasses.replace(base, out_dir=str(tmp_path / "straight"))))

    interrupted = dataclasses.replace(base, out_dir=str(tmp_path / "resumed"))

    def stop_mid_second_epoch(step):
        if step == 3:  # 2 steps per epoch: the first step of epoch 2
            raise Interrupt

    with pytest.raises(Interrupt):
        train(interrupted, on_step=stop_mid_second_epoch)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = load_checkpoint(train(dataclasses.replace(interrupted, resume=True)))

    assert resumed["history"] == [
        {**h, "seconds": r["seconds"], "images_per_second": r["images_per_second"]}
        for h, r in zip(straight["history"], resumed["history"])
    ]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    """``masklens train`` killed with SIGKILL half way through its second epoch (no handler runs, the
    process just ends), then resumed with ``--resume true``: the final weights are those of a run that
    was never interrupted."""
    import signal
    import time

    data = make_tree(tmp_path / "data", per_class=12)  # 36 training images: 6 steps of 6 per epoch
    flags = ["--data-root", str(data), "--epochs", "2", "--augment", "standard", "--image-size", "80"]
    flags += ["--batch-size", "6", "--num-workers", "0", "--validate", "false", "--channels-last", "false"]
    flags += ["--depths", "1", "1", "1", "--widths", "32", "40", "96", "96", "128"]  # the slim student: quick

    def command(out, *more):
        return [sys.executable, "-m", "masklens", "train", *flags, "--out-dir", str(out), *more]

    straight = tmp_path / "straight"
    subprocess.run(command(straight), cwd=REPO, capture_output=True, check=True, timeout=600)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (killed / "history.json").exists() and process.poll() is None:
            time.sleep(0.02)
        # history.json is written right after last.pt: the first epoch is saved. The time of one and a half of
        # its steps later, the second epoch is under way and far from done (the first epoch's steps include
        # the warm-up, so the later ones are quicker, not slower).
        first_epoch = json.loads((killed / "history.json").read_text())["history"][0]["seconds"]
        time.sleep(1.5 * first_epoch / 6)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists()
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 0, "not killed in the second epoch"

    resumed = subprocess.run(command(killed, "--resume", "true"), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    expected, got = load_checkpoint(straight / "model.pt"), load_checkpoint(killed / "model.pt")
    assert [h["train_loss"] for h in got["history"]] == pytest.approx([h["train_loss"] for h in expected["history"]])
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(got["model"][name], tensor, msg=name)


def write_faces_index(folder, landmarks) -> str:
    """A training.faces-style index over generated crops: 2 unmasked (synthesis sources), 2 weakly masked."""
    from PIL import Image

    folder.mkdir(parents=True)
    entries = []
    for i, (label, source) in enumerate(
        [("uncovered", True), ("uncovered", True), ("masked", False), ("masked", False)]
    ):
        pixels = np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"face{i}.png")
        entries.append(
            {
                "file": f"face{i}.png",
                "source": "test",
                "label": label,
                "synth_source": source,
                "landmarks": landmarks,
                "score": 1.0,
            }
        )
    (folder / "index.json").write_text(json.dumps({"faces": entries, "no_face": []}))
    return str(folder / "index.json")


def test_fine_tuning_on_real_faces_and_synthetic_masks(tmp_path):
    templates = shared_data_or_skip("mask-templates")
    data = make_tree(tmp_path / "data", per_class=2)
    first = train(TrainConfig(data_root=str(data), out_dir=str(tmp_path / "first"), epochs=1, **TINY))
    landmarks = [[34, 38], [62, 38], [48, 55], [37, 67], [59, 67]]
    config = TrainConfig(
        data_root=str(data),
        out_dir=str(tmp_path / "tuned"),
        epochs=1,
        init_from=str(first),
        faces_index=write_faces_index(tmp_path / "faces", landmarks),
        synthetic_per_epoch=6,
        mask_templates=str(templates),
        augment="robust",
        **TINY,
    )
    checkpoint = load_checkpoint(train(config))
    (record,) = checkpoint["history"]
    faces = checkpoint["data"]["faces"]
    assert (faces["real_faces"], faces["weakly_labelled"], faces["synthesis_sources"]) == (4, 2, 2)
    assert checkpoint["data"]["init_from"]["file"] == str(first)
    evaluated = evaluate(
        EvalConfig(
            checkpoint=str(tmp_path / "tuned" / "model.pt"),
            data_root=str(data),
            split="holdout",
            out_dir=str(tmp_path / "eval"),
            figures=False,
        )
    )
    assert evaluated["checkpoint"]["init_from"] == checkpoint["data"]["init_from"]
    assert record["skipped_unreadable"] == 0
    # 6 generated tree images + 4 real crops + 6 synthetic masked faces, in batches of 12.
    assert round(record["train_accuracy"] * 16, 6) == round(record["train_accuracy"] * 16)
    with pytest.raises(ValueError, match="preprocessing"):
        train(dataclasses.replace(config, image_size=96, out_dir=str(tmp_path / "other")))

    # Distilled from the first model on the MaskedFace-Net images, with occluded synthetic faces.
    distilled = load_checkpoint(
        train(
            dataclasses.replace(
                config,
                out_dir=str(tmp_path / "distilled"),
                teacher=str(first),
                distill_weight=1.0,
                occluded_share=0.5,
                augment="webcam",
            )
        )
    )
    assert distilled["data"]["teacher"]["file"] == str(first)
    assert math.isfinite(distilled["history"][0]["train_loss"])
    with pytest.raises(ValueError, match="teacher"):
        train(dataclasses.replace(config, out_dir=str(tmp_path / "no-teacher"), distill_weight=1.0))

    # The webcam mode's student: the first block of each repeat, distilled on every image as it sees it.
    student_config = dataclasses.replace(
        config,
        out_dir=str(tmp_path / "student"),
        depths=(1, 1, 1),
        teacher=str(first),
        distill_weight=1.0,
        distill_on="all",
    )
    student = load_checkpoint(train(student_config))
    assert math.isfinite(student["history"][0]["train_loss"])
    assert not any(key.startswith(("backbone.repeat_1.1.", "backbone.repeat_2.1.")) for key in student["model"])
    rebuilt = model_from_checkpoint(student)
    assert [len(getattr(rebuilt.backbone, name)) for name in ("repeat_1", "repeat_2", "repeat_3")] == [1, 1, 1]
    with pytest.raises(ValueError, match="distill_on"):
        train(dataclasses.replace(student_config, out_dir=str(tmp_path / "bad"), distill_on="some"))
    # Its narrower step, started from the student's channels of largest batch-norm scale.
    slim = load_checkpoint(
        train(
            dataclasses.replace(
                student_config,
                out_dir=str(tmp_path / "slim"),
                widths=(16, 20, 48, 48, 64),
                init_from=str(tmp_path / "student" / "model.pt"),
            )
        )
    )
    assert tuple(slim["config"]["widths"]) == (16, 20, 48, 48, 64)
    assert model_from_checkpoint(slim).backbone.mixed_6a.branch1[1].conv.weight.shape[:2] == (48, 48)

    # 30% held out: by its name's hash, face0 (unmasked) alone; scored each epoch, as a real face and masked.
    held = load_checkpoint(
        train(dataclasses.replace(config, out_dir=str(tmp_path / "held"), validate=True, real_validation_percent=30))
    )
    faces = held["data"]["faces"]
    assert (
        faces["real_faces"],
        faces["synthesis_sources"],
        faces["held_out_real_faces"],
        faces["held_out_synthesis_sources"],
    ) == (3, 1, 1, 1)
    (record,) = held["history"]
    assert record["real_val_accuracy"] in (0.0, 1.0) and record["real_val_synthetic_accuracy"] in (0.0, 1.0)
    assert 0.0 <= record["val_accuracy"] <= 1.0


def test_a_shallower_model_starts_from_the_first_blocks_of_a_full_one():
    from training.model import FACENET_NORMALIZATION, Depths, Preprocessing, build_model, state_for_depths

    torch.manual_seed(0)
    preprocessing = Preprocessing(80, **FACENET_NORMALIZATION)
    full = build_model(preprocessing).eval()
    student = build_model(preprocessing, depths=Depths(2, 1, 3)).eval()
    student.load_state_dict(state_for_depths(full.state_dict(), student.depths))  # strict: nothing missing
    for name, kept in (("repeat_1", 2), ("repeat_2", 1), ("repeat_3", 3)):
        setattr(full.backbone, name, getattr(full.backbone, name)[:kept])
    images = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(student(images)[0], full(images)[0])
    with pytest.raises(ValueError, match=r"repeat_2 keeps 0\.\.10"):
        Depths(1, 11, 1)


def test_a_narrower_model_keeps_the_channels_of_largest_scale_of_a_wider_one():
    from training.model import (
        FACENET_NORMALIZATION,
        WIDTH_CUTS,
        Depths,
        Preprocessing,
        Widths,
        build_model,
        state_for_widths,
    )

    torch.manual_seed(0)
    preprocessing = Preprocessing(80, **FACENET_NORMALIZATION)
    widths = Widths(16, 20, 48, 40, 64)
    wide = build_model(preprocessing, depths=Depths(1, 1, 1)).eval()
    # Channels that output zero whatever comes in (batch-norm scale and shift 0, then ReLU) change nothing
    # downstream, so a model without them computes the same: silence all but `width` random ones per layer.
    with torch.no_grad():
        for name, cuts in WIDTH_CUTS.items():
            for producer, _ in cuts:
                bn = wide.backbone.get_submodule(producer).bn
                bn.weight.uniform_(0.5, 1.5)
                silenced = torch.randperm(bn.num_features)[getattr(widths, name) :]
                bn.weight[silenced] = 0.0
                bn.bias[silenced] = 0.0
    narrow = build_model(preprocessing, depths=Depths(1, 1, 1), widths=widths).eval()
    narrow.load_state_dict(state_for_widths(wide.state_dict(), widths))  # strict: every shape fits
    assert narrow.backbone.conv2d_4a.conv.out_channels == 48 and narrow.backbone.conv2d_4b.conv.in_channels == 48
    assert narrow.backbone.mixed_7a.branch2[1].conv.in_channels == 64
    images = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(narrow(images)[0], wide(images)[0])
    with pytest.raises(ValueError, match=r"conv2d_4a keeps 1\.\.192"):
        Widths(conv2d_4a=200)


def test_held_out_real_faces_are_a_fixed_share_of_real_photos_only():
    from training.datasets import is_held_out

    names = [f"real-with-mask/photo{i}.png" for i in range(2000)]
    held = [name for name in names if is_held_out({"file": name, "source": "real-with-mask"}, 10)]
    assert 150 < len(held) < 250
    assert held == [name for name in names if is_held_out({"file": name, "source": "real-with-mask"}, 10)]
    assert not any(is_held_out({"file": name, "source": "mfn-uncovered"}, 100) for name in names)
    assert not any(is_held_out({"file": name, "source": "real-with-mask"}, 0) for name in names)


def test_fp16_checkpoints_keep_values_that_overflow_fp16_in_fp32():
    from training.checkpoint import checkpoint_payload
    from training.model import FACENET_NORMALIZATION, Preprocessing, build_model

    model = build_model(Preprocessing(80, **FACENET_NORMALIZATION))
    model.backbone.repeat_3[0].branch0.bn.running_var.fill_(2e5)  # as the paper recipe grows them
    state = checkpoint_payload(model, TrainConfig(), {}, [], 0, torch.float16)["model"]
    assert state["backbone.repeat_3.0.branch0.bn.running_var"].dtype == torch.float32
    assert state["backbone.repeat_3.0.branch0.bn.running_var"].eq(2e5).all()
    assert state["backbone.logits.weight"].dtype == torch.float16
    rebuilt = model_from_checkpoint(
        {
            "model": state,
            "config": {"dropout": 0.6},
            "classes": list(CLASSES),
            "reasons": ["nose", "chin", "nose_and_mouth"],
            "preprocessing": model.preprocessing.to_dict(),
        }
    )
    assert torch.isfinite(rebuilt.backbone.repeat_3[0].branch0.bn.running_var).all()


def test_resume_refuses_a_changed_config(tmp_path):
    data = make_tree(tmp_path / "data", per_class=2)
    config = TrainConfig(data_root=str(data), out_dir=str(tmp_path / "run"), epochs=1, **TINY)
    train(config)
    with pytest.raises(ValueError, match="lr"):
        train(dataclasses.replace(config, lr=0.5, resume=True))


def test_torchrun_two_processes_on_cpu(tmp_path):
    data = make_tree(tmp_path / "data", per_class=2)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "masklens",
        "train",
        "--data-root",
        str(data),
        "--out-dir",
        str(out),
        "--epochs",
        "1",
        "--image-size",
        "80",
        "--batch-size",
        "6",
        "--num-workers",
        "0",
        "--validate",
        "true",
        "--channels-last",
        "false",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(out / "model.pt")
    (record,) = checkpoint["history"]
    # 6 training images over 2 ranks, one batch of 3 each: every image seen exactly once across the ranks.
    assert record["epoch"] == 1 and "val_accuracy" in record
    assert round(record["train_accuracy"] * 6) == record["train_accuracy"] * 6


def test_evaluation_is_deterministic_and_complete(tmp_path):
    data = make_tree(tmp_path / "data", per_class=3)
    model_path = train(TrainConfig(data_root=str(data), out_dir=str(tmp_path / "run"), epochs=1, **TINY))
    config = EvalConfig(
        checkpoint=str(model_path), data_root=str(data), split="holdout", out_dir=str(tmp_path / "eval")
    )
    result = evaluate(config)
    first = (tmp_path / "eval" / "metrics-holdout.json").read_bytes()
    evaluate(config)
    assert (tmp_path / "eval" / "metrics-holdout.json").read_bytes() == first
    assert result["images"] == 9 and sum(map(sum, result["confusion_matrix"])) == 9
    assert set(result["per_reason"]) == {"nose", "chin", "nose_and_mouth"}
    assert result["reason_head"]["confusion_matrix"]
    for figure in ("confusion-holdout", "reliability-holdout", "training-curves", "dataset-classes", "dataset-reasons"):
        assert (tmp_path / "eval" / "figures" / f"{figure}.png").stat().st_size > 1000
