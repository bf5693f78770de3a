"""The training loop: ``masklens train --preset NAME`` (presets and fields: ``training.config``).

Runs on one process, or under ``torchrun --nproc_per_node N -m masklens train ...`` with
DistributedDataParallel (gloo on CPU, nccl on CUDA). Writes into ``out_dir``: ``config.json`` (the resolved
config), ``last.pt`` after every epoch (resumable with ``--resume true``), ``history.json`` and, at the end,
``model.pt``: the weights alone, stored in fp16, with everything needed to rebuild and run the model
(``training.checkpoint``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from masklens.cli import parse_config
from masklens.files import sha256_of, write_json
from masklens.machine import cpu_name

from .checkpoint import checkpoint_payload, load_checkpoint_for, model_from_checkpoint
from .config import DISTILL_ON, PRESETS, TrainConfig, preprocessing_for
from .data import SplitIndex, index_split
from .datasets import FaceDataset, SyntheticMaskDataset, collate_skipping_unreadable, real_face_data, reframing_for
from .distributed import Distributed
from .losses import compute_loss, count_correct, distillation_loss
from .model import Depths, MaskClassifier, Preprocessing, Widths, build_model, state_for_depths, state_for_widths
from .optim import make_optimizer, make_scheduler
from .scoring import accuracy_on, autocast, validation_scores


def train(config: TrainConfig, on_step: Callable[[int], None] | None = None) -> Path:
    """Trains per ``config`` and returns the path of the final ``model.pt``.

    ``on_step(global_step)`` is called after every optimiser step (progress hooks; tests use it to
    interrupt a run).
    """
    env = Distributed()
    try:
        return _train(config, env, on_step)
    finally:
        env.close()


@dataclass
class TrainingData:
    """What one run trains on and scores after every epoch, and how its epochs are batched."""

    train_set: Dataset
    synthetic: SyntheticMaskDataset | None  # re-drawn every epoch
    validation: Dataset | None
    real_validation: dict[str, Dataset]  # history key -> held-out real faces
    summary: dict  # what the checkpoint records of the data


def index_splits(config: TrainConfig, env: Distributed) -> tuple[dict[str, SplitIndex], dict]:
    """The MaskedFace-Net splits the run reads, and their summaries (unreadable files reported)."""
    splits: dict[str, SplitIndex] = {"train": index_split(config.data_root, "train")}
    if config.validate:
        splits["validation"] = index_split(config.data_root, "validation")
    for name, index in splits.items():
        if index.unreadable and env.is_main:
            print(
                f"{name}: skipping {len(index.unreadable)} unreadable image(s): "
                + ", ".join(str(p) for p in index.unreadable[:5]),
                file=sys.stderr,
            )
    return splits, {name: index.summary() for name, index in splits.items()}


def build_models(
    config: TrainConfig, preprocessing: Preprocessing, device: torch.device, summary: dict
) -> tuple[MaskClassifier, MaskClassifier | None]:
    """The model to train (started from ``init_from`` when given) and the teacher, if any, on ``device``."""
    if config.distill_on not in DISTILL_ON:
        raise ValueError(f"distill_on must be one of {DISTILL_ON}, got {config.distill_on!r}")
    depths, widths = Depths(*config.depths), Widths(*config.widths)
    model = build_model(preprocessing, dropout=config.dropout, depths=depths, widths=widths)
    if config.init_from:
        start = load_checkpoint_for(config.init_from, preprocessing)
        state = state_for_widths(state_for_depths(start["model"], depths), widths)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        summary["init_from"] = {"file": str(config.init_from), "sha256": sha256_of(config.init_from)}
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.distill_weight and not config.teacher:
        raise ValueError("distill_weight needs teacher (the checkpoint to distil)")
    teacher = None
    if config.teacher:
        teacher = model_from_checkpoint(load_checkpoint_for(config.teacher, preprocessing)).to(device)
        if config.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        summary["teacher"] = {"file": str(config.teacher), "sha256": sha256_of(config.teacher)}
    return model, teacher


def training_data(
    config: TrainConfig, splits: dict[str, SplitIndex], summary: dict, preprocessing: Preprocessing, distilled: bool
) -> TrainingData:
    """MaskedFace-Net's train split (capped at ``max_images``), plus real face crops and synthetic masked faces
    when ``faces_index`` is set; the teacher sees unaugmented views of MaskedFace-Net's images when
    ``distilled`` and ``distill_on`` is "clean"."""
    samples = splits["train"].samples
    if config.max_images:
        samples = tuple(
            np.random.default_rng(config.seed).permutation(np.array(samples, dtype=object))[: config.max_images]
        )
    clean_views = distilled and config.distill_on == "clean"
    reframing = reframing_for(config.framing)
    if reframing:
        summary["reframing"] = reframing.to_dict()
    parts: list[Dataset] = [
        FaceDataset(samples, preprocessing, config.augment, teacher_view=clean_views, reframing=reframing)
    ]
    real, synthetic, real_validation = real_face_data(config, preprocessing, summary)
    parts += real
    validation = (
        FaceDataset(splits["validation"].samples, preprocessing, "none", reframing=reframing)
        if config.validate
        else None
    )
    return TrainingData(
        train_set=parts[0] if len(parts) == 1 else ConcatDataset(parts),
        synthetic=synthetic,
        validation=validation,
        real_validation=real_validation,
        summary=summary,
    )


def resume_state(config: TrainConfig, last_path: Path, model, optimizer, scheduler, env: Distributed):
    """(history, first epoch to run): from ``last_path`` with ``--resume true``, refused if the config
    differs; else a fresh start."""
    if not (config.resume and last_path.exists()):
        return [], 0
    state = torch.load(last_path, map_location="cpu", weights_only=True)
    saved = {k: v for k, v in state["config"].items() if k != "resume"}
    current = {k: v for k, v in dataclasses.asdict(config).items() if k != "resume"}
    if saved != current:
        changed = sorted(k for k in current if saved.get(k) != current[k])
        raise ValueError(f"cannot resume {last_path}: config differs in {changed}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if env.is_main:
        print(f"resuming from {last_path} after epoch {state['epoch'] + 1}", file=sys.stderr)
    return state["history"], state["epoch"] + 1


@dataclass
class Step:
    """What every optimiser step needs: the models, the optimiser and schedule, and the run's settings."""

    config: TrainConfig
    model: torch.nn.Module  # the DistributedDataParallel wrapper when distributed
    teacher: MaskClassifier | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device

    def on_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        return images.contiguous(memory_format=torch.channels_last) if self.config.channels_last else images

    def run(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch: -> (loss, class logits, labels)."""
        config = self.config
        images, labels, reasons, teacher_views = batch
        images, labels, reasons = self.on_device(images), labels.to(self.device), reasons.to(self.device)
        with autocast(self.device, config.bf16):
            outputs = self.model(images)
        loss = compute_loss(outputs, labels, reasons, config)
        if self.teacher is not None and config.distill_on == "all":
            teacher_views = (torch.arange(len(labels)), images)
        if self.teacher is not None and teacher_views is not None:
            rows, views = teacher_views[0].to(self.device), self.on_device(teacher_views[1])
            with torch.no_grad(), autocast(self.device, config.bf16):
                teacher_logits, _ = self.teacher(views)
            # Summed over the distilled images and divided by the batch size, like the other terms.
            distilled = distillation_loss(outputs[0][rows], teacher_logits, config.distill_temperature)
            loss = loss + config.distill_weight * distilled * len(rows) / len(labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, outputs[0], labels


def train_epoch(
    step: Step, loader: DataLoader, epoch: int, env: Distributed, global_step: int, on_step
) -> tuple[dict, int]:
    """One pass over the loader: -> (the epoch's history record, before validation; the global step)."""
    config = step.config
    step.model.train()
    seen = correct = skipped = 0
    loss_sum = 0.0
    started = time.perf_counter()
    progress = tqdm(
        loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not env.is_main, dynamic_ncols=True, mininterval=2.0
    )
    for batch, batch_skipped in progress:
        skipped += batch_skipped
        if batch is not None:
            loss, logits, labels = step.run(batch)
            seen += len(labels)
            correct += count_correct(logits.argmax(1), labels)
            loss_sum += loss.item() * len(labels)
            rate = seen / (time.perf_counter() - started)
            progress.set_postfix(
                loss=f"{loss_sum / seen:.4f}",
                acc=f"{correct / seen:.4f}",
                img_s=f"{rate * env.world_size:.1f}",
                refresh=False,
            )
        # Every rank steps the schedule even for an all-unreadable batch, so ranks stay in lockstep.
        step.scheduler.step()
        global_step += 1
        if on_step:
            on_step(global_step)
    seen, correct, loss_sum, skipped = env.all_sum([seen, correct, loss_sum, skipped])
    seconds = time.perf_counter() - started
    record = {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct / max(seen, 1),
        "seconds": seconds,
        "images_per_second": seen / seconds,
        "skipped_unreadable": int(skipped),
        "lr_end": step.scheduler.get_last_lr()[0],
        "device": device_name(step.device),
    }
    return record, global_step


def _train(config: TrainConfig, env: Distributed, on_step) -> Path:
    out_dir = Path(config.out_dir)
    device = env.device
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", dataclasses.asdict(config))
    splits, summary = index_splits(config, env)
    torch.manual_seed(config.seed)
    preprocessing = preprocessing_for(config)
    model, teacher = build_models(config, preprocessing, device, summary)
    data = training_data(config, splits, summary, preprocessing, distilled=teacher is not None)
    sampler = (
        DistributedSampler(
            data.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        if env.enabled
        else None
    )
    per_rank_batch = max(1, config.batch_size // env.world_size)
    per_rank_images = len(sampler) if sampler else len(data.train_set)
    # Batch norm cannot train on a batch of one image, so a final batch of one is dropped.
    drop_last = per_rank_images % per_rank_batch == 1 and per_rank_images > 1
    steps_per_epoch = per_rank_images // per_rank_batch if drop_last else math.ceil(per_rank_images / per_rank_batch)

    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    last_path = out_dir / "last.pt"
    history, start_epoch = resume_state(config, last_path, model, optimizer, scheduler, env)
    ddp_model = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if env.enabled
        else model
    )
    step = Step(config, ddp_model, teacher, optimizer, scheduler, device)
    scored = {
        name: DataLoader(dataset, batch_size=64, num_workers=config.num_workers, collate_fn=collate_skipping_unreadable)
        for name, dataset in data.real_validation.items()
    }
    val_loader = (
        None
        if data.validation is None
        else DataLoader(
            data.validation, batch_size=64, num_workers=config.num_workers, collate_fn=collate_skipping_unreadable
        )
    )

    global_step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed + 1000 * (epoch + 1) + env.rank)
        if sampler:
            sampler.set_epoch(epoch)
        if data.synthetic is not None:
            data.synthetic.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed + epoch)
        loader = DataLoader(
            data.train_set,
            batch_size=per_rank_batch,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=config.num_workers,
            collate_fn=collate_skipping_unreadable,
            generator=generator,
            drop_last=drop_last,
            worker_init_fn=_seed_worker,
            persistent_workers=False,
        )
        record, global_step = train_epoch(step, loader, epoch, env, global_step, on_step)
        if env.is_main:
            if val_loader is not None:
                record.update(validation_scores(model, val_loader, device, config))
            for name, real_val_loader in scored.items():
                record[name] = accuracy_on(model, real_val_loader, device, config)
            history.append(record)
            _save_epoch(step, model, data.summary, history, epoch, last_path)
        env.barrier()
    return _write_final(model, config, data.summary, history, last_path, env)


def _save_epoch(step: Step, model: MaskClassifier, summary: dict, history: list, epoch: int, last_path: Path) -> None:
    """``last.pt`` (weights, optimiser and schedule: resumable) and ``history.json`` after an epoch."""
    print(json.dumps(history[-1]), file=sys.stderr)
    state = checkpoint_payload(model, step.config, summary, history, epoch)
    state.update(optimizer=step.optimizer.state_dict(), scheduler=step.scheduler.state_dict())
    partial = last_path.with_name("last.pt.tmp")
    torch.save(state, partial)
    os.replace(partial, last_path)
    write_json(last_path.with_name("history.json"), {"history": history})


def _write_final(
    model: MaskClassifier, config: TrainConfig, summary: dict, history: list, last_path: Path, env: Distributed
) -> Path:
    """``model.pt``: the last epoch's weights in fp16 with the run's record."""
    model_path = Path(config.out_dir) / "model.pt"
    if env.is_main:
        if not history:
            history = torch.load(last_path, map_location="cpu", weights_only=True)["history"]
        final = checkpoint_payload(model, config, summary, history, config.epochs - 1, weights_dtype=torch.float16)
        torch.save(final, model_path)
    env.barrier()
    return model_path


def device_name(device: torch.device) -> str:
    """What trained: the GPU's name, or the CPU's model and the threads torch used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainConfig, argv, PRESETS, description=__doc__.splitlines()[0])
    path = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {path}")
