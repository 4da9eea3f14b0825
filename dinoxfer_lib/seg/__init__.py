"""Mitochondria segmentation on EM with light heads on ViT patch tokens (paper 004; issue 18, item 3).

- :mod:`.config`: :class:`SegConfig` (head, regimes, training sets, joint sampling, recipe, backbones).
- :mod:`.heads`: :func:`patch_tokens` (inputs prepared as the channel encoder does) and the linear / conv heads.
- :mod:`.losses`: Dice + BCE, foreground IoU.
- :mod:`.train`: :func:`train_segmenter`, :func:`run_seg_study` (004's table) and the joint-domain sampler.

The book's ``seg/<backbone>`` stages are :mod:`dinoxfer_lib.pipeline.adapt`.
"""

from __future__ import annotations

from dinoxfer_lib.lazy import lazy_exports

# name -> submodule; loaded on first use, so ``dinoxfer_lib.config`` can import :mod:`.config` without torch.
_EXPORTS = {
    "HEADS": "config", "JOINT_SAMPLING": "config", "SEG_REGIMES": "config", "SegConfig": "config",
    "ConvSegHead": "heads", "LinearSegHead": "heads", "make_seg_head": "heads", "patch_tokens": "heads",
    "dice_bce_loss": "losses", "foreground_iou": "losses", "iou_counts": "losses",
    "SegResult": "train", "Segmenter": "train", "compute_tokens": "train", "example_rows": "train",
    "joint_draws": "train",
    "predict_masks": "train", "run_seg_study": "train", "train_segmenter": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
