"""Segmentation loss and score: Dice + BCE for training, foreground IoU for evaluation (paper 004)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dinoxfer_lib.errors import DataError


def dice_bce_loss(logits: torch.Tensor, masks: torch.Tensor, *, dice_weight: float = 1.0, bce_weight: float = 1.0,
                  smooth: float = 1.0) -> torch.Tensor:
    """``bce_weight * BCE + dice_weight * (1 - soft Dice)`` of logits ``(B, H, W)`` against masks ``(B, H, W)``.

    BCE is the mean over all pixels. Soft Dice is computed per image on the sigmoid probabilities p and the mask t,
    ``(2 Σ p t + smooth) / (Σ p + Σ t + smooth)``, then averaged over images; ``smooth`` keeps an image without
    foreground from dividing by zero (a prediction of all background then scores Dice 1).
    """
    masks = masks.to(logits.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, masks)
    probs = torch.sigmoid(logits).flatten(1)  # (B, H*W)
    truth = masks.flatten(1)
    dice = (2 * (probs * truth).sum(1) + smooth) / (probs.sum(1) + truth.sum(1) + smooth)  # (B,)
    return bce_weight * bce + dice_weight * (1 - dice.mean())


def iou_counts(predicted: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks of one shape; sum them over batches."""
    if isinstance(predicted, torch.Tensor):
        predicted, truth = predicted.bool(), truth.bool()
        return int((predicted & truth).sum()), int((predicted | truth).sum())
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    return int((predicted & truth).sum()), int((predicted | truth).sum())


def foreground_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Foreground IoU (Jaccard index of the mitochondrion class) pooled over all pixels of all images.

    Pooling over the whole test set, as EM benchmarks score a volume, keeps patches with little or no foreground
    from weighing as much as full ones. NaN when neither mask has foreground (the score is undefined).
    """
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise DataError(f"predicted masks {predicted.shape} and true masks {truth.shape} differ in shape")
    intersection, union = iou_counts(predicted, truth)
    return intersection / union if union else float("nan")
