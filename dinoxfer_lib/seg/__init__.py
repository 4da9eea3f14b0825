"""Mitochondria segmentation on EM with light heads on ViT patch tokens (paper 004; issue 18, item 3).

- :mod:`.config`: :class:`SegConfig` (head, regimes, training sets, joint sampling, recipe).
- :mod:`.heads`: :func:`patch_tokens` (inputs prepared as the channel encoder does) and the linear / conv heads.
- :mod:`.losses`: Dice + BCE, foreground IoU.
- :mod:`.train`: :func:`train_segmenter`, :func:`run_seg_study` (004's table) and the joint-domain sampler.
"""

from dinoxfer_lib.seg.config import HEADS, JOINT_SAMPLING, SEG_REGIMES, SegConfig
from dinoxfer_lib.seg.heads import ConvSegHead, LinearSegHead, make_seg_head, patch_tokens
from dinoxfer_lib.seg.losses import dice_bce_loss, foreground_iou, iou_counts
from dinoxfer_lib.seg.train import (
    SegResult, Segmenter, compute_tokens, joint_draws, predict_masks, run_seg_study, train_segmenter,
)

__all__ = [
    "HEADS",
    "JOINT_SAMPLING",
    "SEG_REGIMES",
    "ConvSegHead",
    "LinearSegHead",
    "SegConfig",
    "SegResult",
    "Segmenter",
    "compute_tokens",
    "dice_bce_loss",
    "foreground_iou",
    "iou_counts",
    "joint_draws",
    "make_seg_head",
    "patch_tokens",
    "predict_masks",
    "run_seg_study",
    "train_segmenter",
]
