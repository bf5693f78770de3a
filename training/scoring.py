"""Running a model over a loader: probabilities per batch, validation accuracy and loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .config import TrainConfig
from .losses import count_correct
from .model import MaskClassifier


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def predict_batches(
    model: MaskClassifier, loader: DataLoader, device: torch.device, bf16: bool = False, channels_last: bool = False
):
    """Yields (probabilities, reason probabilities, labels, reasons) per batch, in loader order."""
    model.eval()
    for batch, _ in loader:
        if batch is None:
            continue
        images, labels, reasons, _ = batch
        images = images.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            logits, reason_logits = model(images)
        yield logits.float().softmax(1).cpu(), reason_logits.float().softmax(1).cpu(), labels, reasons


def validation_scores(model, loader, device, config: TrainConfig) -> dict:
    correct = total = 0
    loss_sum = 0.0
    for probs, _, labels, _ in predict_batches(model, loader, device, config.bf16, config.channels_last):
        correct += int((probs.argmax(1) == labels).sum())
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
        total += len(labels)
    return {"val_accuracy": correct / max(total, 1), "val_loss": loss_sum / max(total, 1)}


def accuracy_on(model, loader, device, config: TrainConfig) -> float:
    """Share of right answers, a weak "masked" label counting as right for covered or incorrect."""
    correct = total = 0
    for probs, _, labels, _ in predict_batches(model, loader, device, config.bf16, config.channels_last):
        correct += count_correct(probs.argmax(1), labels)
        total += len(labels)
    return correct / max(total, 1)
