"""The training losses: cross-entropy on known classes, a partial-label (or prior) loss on weak "masked"
labels, the reason loss, and distillation from a teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklens.labels import CLASSES, NO_REASON

from .config import TrainConfig
from .datasets import MASK_CLASSES, MASKED_LABEL


def partial_label_loss(logits: torch.Tensor, allowed: list[int]) -> torch.Tensor:
    """Per image, -log of the probability that the class is one of ``allowed``: -log(sum p_allowed)."""
    return torch.logsumexp(logits, dim=1) - torch.logsumexp(logits[:, allowed], dim=1)


def masked_prior_loss(logits: torch.Tensor, covered_share: float) -> torch.Tensor:
    """Per image, cross-entropy towards covered with probability ``covered_share`` and incorrect with the rest."""
    log_p = F.log_softmax(logits, dim=1)
    covered, incorrect = MASK_CLASSES
    return -(covered_share * log_p[:, covered] + (1 - covered_share) * log_p[:, incorrect])


def compute_loss(outputs, labels, reasons, config: TrainConfig) -> torch.Tensor:
    """Cross-entropy on known classes, ``partial_label_loss`` (or, with ``masked_covered_share``,
    ``masked_prior_loss``) on weak "masked" labels, plus the reason loss.

    Both class terms are summed per image and divided by the batch size, so a weakly labelled
    image weighs as much as a labelled one.
    """
    logits, reason_logits = outputs
    logits = logits.float()
    weak = labels == MASKED_LABEL
    known = F.cross_entropy(logits, labels.clamp_min(0), label_smoothing=config.label_smoothing, reduction="none")
    weak_loss = (
        masked_prior_loss(logits, config.masked_covered_share)
        if config.masked_covered_share
        else partial_label_loss(logits, MASK_CLASSES)
    )
    per_image = torch.where(weak, weak_loss, known)
    loss = per_image.mean()
    # The reason loss is the mean over the batch's incorrectly masked images. It stays in the graph even
    # when the batch has none (or its weight is 0), because DistributedDataParallel needs every parameter
    # to receive a gradient on every rank at every step.
    has_reason = reasons != NO_REASON
    per_image = F.cross_entropy(reason_logits.float(), reasons.clamp_min(0), reduction="none")
    reason_loss = (per_image * has_reason).sum() / has_reason.sum().clamp_min(1)
    return loss + config.reason_weight * reason_loss


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s KL(teacher || student) at ``temperature``, times its square (so that the
    gradients keep their size whatever the temperature); mean over the images."""
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def count_correct(predicted: torch.Tensor, labels: torch.Tensor) -> int:
    """Right answers; a weakly labelled "masked" image is right when the class is covered or incorrect."""
    weak = labels == MASKED_LABEL
    right = torch.where(weak, predicted != CLASSES.index("uncovered"), predicted == labels)
    return int(right.sum())
