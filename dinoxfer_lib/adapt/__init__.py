"""Adapting a pretrained backbone instead of probing it frozen (issue 18; paper 004).

- :mod:`.config`: :class:`AdaptConfig` (regimes, folds, optimisation) and :class:`LoraSettings`.
- :mod:`.lora`: LoRA adapters on the attention projections through ``peft``; parameter counts.
- :mod:`.optim`: layer-wise lr decay groups (timm) and the per-step cosine schedule.
- :mod:`.model`: :class:`AdaptedClassifier` (encoder → standardisation → the paper's MLP), saving and reloading.
- :mod:`.train`: :func:`run_adaptation`, every regime on Table III's folds, scored as the probes are.
- :mod:`.bench`: a LoRA step and a segmentation-head epoch against plain PyTorch loops (not imported here).

The book's ``adapt/<set>`` stages are :mod:`dinoxfer_lib.pipeline.adapt`.
"""

from __future__ import annotations

from dinoxfer_lib.lazy import lazy_exports

# name -> submodule; loaded on first use, so ``dinoxfer_lib.config`` can import :mod:`.config` without torch.
_EXPORTS = {
    "REGIMES": "config", "AdaptConfig": "config", "LoraSettings": "config",
    "add_lora": "lora", "attention_projections": "lora", "count_parameters": "lora", "lora_state_dict": "lora",
    "AdaptedClassifier": "model", "load_adapted": "model", "save_adapted": "model",
    "cosine_schedule": "optim", "layer_decay_groups": "optim",
    "AdaptResult": "train", "embed_images": "train", "run_adaptation": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
