"""Adapting a pretrained backbone instead of probing it frozen (issue 18; paper 004).

- :mod:`.config`: :class:`AdaptConfig` (regimes, folds, optimisation) and :class:`LoraSettings`.
- :mod:`.lora`: LoRA adapters on the attention projections through ``peft``; parameter counts.
- :mod:`.optim`: layer-wise lr decay groups (timm) and the per-step cosine schedule.
- :mod:`.model`: :class:`AdaptedClassifier` (encoder → standardisation → the paper's MLP), saving and reloading.
- :mod:`.train`: :func:`run_adaptation`, every regime on Table III's folds, scored as the probes are.
- :mod:`.bench`: a LoRA step and a segmentation-head epoch against plain PyTorch loops (not imported here).
"""

from dinoxfer_lib.adapt.config import REGIMES, AdaptConfig, LoraSettings
from dinoxfer_lib.adapt.lora import add_lora, attention_projections, count_parameters, lora_state_dict
from dinoxfer_lib.adapt.model import AdaptedClassifier, load_adapted, save_adapted
from dinoxfer_lib.adapt.optim import cosine_schedule, layer_decay_groups
from dinoxfer_lib.adapt.train import AdaptResult, embed_images, run_adaptation

__all__ = [
    "REGIMES",
    "AdaptConfig",
    "AdaptResult",
    "AdaptedClassifier",
    "LoraSettings",
    "add_lora",
    "attention_projections",
    "cosine_schedule",
    "count_parameters",
    "embed_images",
    "layer_decay_groups",
    "load_adapted",
    "lora_state_dict",
    "run_adaptation",
    "save_adapted",
]
