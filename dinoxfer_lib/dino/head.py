"""DINO projection head and the multi-crop wrapper that runs a backbone over views of several sizes.

Parameter names follow the official implementation (``backbone.*``, ``head.mlp.*``, ``head.last_layer.weight_g``,
``head.last_layer.weight_v``), so our checkpoints have the official layout and load wherever official ones do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight ``g * v / ||v||`` per output row (Salimans & Kingma 2016).

    Written out instead of ``torch.nn.utils.weight_norm`` (deprecated) or its parametrization (other parameter
    names), so the state dict keeps the official ``weight_g`` / ``weight_v`` keys.
    """

    def __init__(self, in_dim: int, out_dim: int, *, fix_g: bool) -> None:
        super().__init__()
        v = torch.empty(out_dim, in_dim)
        nn.init.trunc_normal_(v, std=0.02)
        self.weight_v = nn.Parameter(v)
        # Official DINO fills weight_g with 1 and, with norm_last_layer, never trains it.
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fix_g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * F.normalize(self.weight_v, dim=1)
        return F.linear(x, weight)


class DINOHead(nn.Module):
    """MLP (``layers`` linear layers, GELU) → bottleneck → L2 normalisation → weight-normalised prototypes."""

    def __init__(
        self, in_dim: int, out_dim: int, *, hidden_dim: int = 2048, bottleneck_dim: int = 256, layers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        modules: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            modules.append(nn.Linear(a, b))
            if i < layers - 1:
                modules.append(nn.GELU())
        self.mlp = nn.Sequential(*modules)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fix_g=norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)  # the L2 bottleneck keeps the prototype logits in [-g, g]
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Backbone + head over a list of views: views of equal size go through the backbone as one batch.

    ``forward(views)`` returns the head's logits of all views stacked view-major: ``(len(views) * B, out_dim)``.
    """

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        features, start = [], 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            features.append(self.backbone(torch.cat(views[start:end])))  # (n_same_size * B, D) CLS tokens
            start = end
        return self.head(torch.cat(features))
