"""Optimiser parameter groups for fine-tuning: layer-wise lr decay (BEiT, DINOv2), and a per-step cosine.

Layer-wise decay keeps the lower blocks, whose generic features transfer best, close to their pretrained values.
The grouping is timm's ``param_groups_layer_decay`` (the model's own ``group_matcher``): block i of a depth-d ViT
learns at ``lr * decay ** (d - 1 - i)`` - the last block and the final norm at ``lr`` - and the stem (patch
embedding, class token, position embedding) at ``lr * decay ** d``. (BEiT and MAE count the classifier as one more
layer, which shifts every backbone lr down by one factor of ``decay``; here the head has its own lr.) Biases,
norms, the class token and the position embedding get no weight decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def layer_decay_groups(backbone: nn.Module, *, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups of ``backbone``'s trainable parameters, each with its decayed ``lr``.

    Returns
    -------
    list of dict
        ``params``, ``lr`` (absolute), ``lr_scale`` (``lr`` / the top lr) and ``weight_decay`` per group.
    """
    from timm.optim import param_groups_layer_decay

    no_decay = backbone.no_weight_decay() if hasattr(backbone, "no_weight_decay") else ()
    groups = param_groups_layer_decay(backbone, weight_decay=weight_decay, no_weight_decay_list=no_decay,
                                      layer_decay=layer_decay)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return groups


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group's lr from its own start value to 0 along a cosine over ``total_steps``; step once per step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
