"""DINO projection head and the multi-crop wrappers that run a backbone over views of several sizes.

Parameter names follow the official implementations: DINO's ``backbone.*``, ``head.mlp.*``,
``head.last_layer.weight_g``, ``head.last_layer.weight_v``; DINOv2's ``backbone.*`` (with ``backbone.mask_token``),
``dino_head.*`` and ``ibot_head.*``. Our checkpoints have the official layouts and load wherever official ones do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dinoxfer_lib.dino.masked_vit import vit_tokens


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


class MaskedMultiCropWrapper(nn.Module):
    """DINOv2's student or teacher: backbone, DINO head on CLS tokens, iBOT head on masked patch tokens.

    Parameters
    ----------
    backbone
        A timm ViT; with a ``mask_token`` (:func:`~dinoxfer_lib.dino.masked_vit.add_mask_token`) when masks are used.
    dino_head
        Projection head of the CLS tokens.
    ibot_head
        Projection head of the patch tokens; ``None`` = the DINO head serves both (DINOv2's default).

    ``forward(views, masks, mask_inputs=...)`` takes the views ``[globals (2B, C, g, g), locals ...]`` and the masks
    ``(2B, N)`` of the global crops (or ``None``: no patch loss) and returns

    - the head's logits of every view's CLS token, stacked view-major: ``(len(views) * B, K)``;
    - the patch head's logits at the masked patches, in ``masks[masks]`` order: ``(M, K')``;
    - the global crops' CLS tokens from the backbone (before the head): ``(2B, D)``, for KoLeo.

    The student is called with ``mask_inputs=True`` (masked patches enter as the mask token); the teacher with
    ``mask_inputs=False`` (it sees the whole crops, and its patch tokens at the same positions are the targets).
    """

    def __init__(self, backbone: nn.Module, dino_head: DINOHead, ibot_head: DINOHead | None = None) -> None:
        super().__init__()
        self.backbone, self.dino_head, self.ibot_head = backbone, dino_head, ibot_head

    def forward(self, views: list[torch.Tensor], masks: torch.Tensor | None, *, mask_inputs: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        global_cls, patches = vit_tokens(self.backbone, views[0], masks if mask_inputs else None)
        cls_tokens = [global_cls]
        start = 1
        while start < len(views):  # local views of equal size go through the backbone as one batch
            end = start + 1
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            cls_tokens.append(self.backbone.forward_features(torch.cat(views[start:end]))[:, 0])
            start = end
        cls_tokens = torch.cat(cls_tokens)  # (len(views) * B, D)
        masked = patches[masks] if masks is not None else patches.new_zeros(0, patches.shape[-1])  # (M, D)
        if self.ibot_head is None:  # shared head: CLS and patch tokens in one pass
            logits = self.dino_head(torch.cat((cls_tokens, masked)))
            return logits[:len(cls_tokens)], logits[len(cls_tokens):], global_cls
        return self.dino_head(cls_tokens), self.ibot_head(masked), global_cls
