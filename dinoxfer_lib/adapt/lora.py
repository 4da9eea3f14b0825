"""LoRA adapters on a timm ViT's attention projections with Hugging Face ``peft``, and parameter bookkeeping.

peft wraps modules by name. A bare suffix such as ``"proj"`` would also match the patch embedding's
``patch_embed.proj`` convolution, so :func:`attention_projections` resolves each configured target to the full
names of the ``Linear`` layers inside the blocks' attention (``blocks.3.attn.qkv``) and only those are handed to
``peft.inject_adapter_in_model``, which wraps them in place: the backbone keeps its timm API
(``forward_features``, ``get_intermediate_layers``), so a :class:`~dinoxfer_lib.models.channels.ChannelEncoder`
around it runs unchanged. peft freezes every other weight; each adapter's B starts at zero, so an adapted
backbone starts out computing exactly what the pretrained one did.
"""

from __future__ import annotations

import torch
from torch import nn

from dinoxfer_lib.adapt.config import LoraSettings
from dinoxfer_lib.errors import ConfigError


def attention_projections(backbone: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Full names of the attention ``Linear`` layers named ``*.attn.<target>``, in model order.

    Raises
    ------
    ConfigError
        A target that names no attention ``Linear`` of this backbone (the message lists the ones it has).
    """
    found = {name: module for name, module in backbone.named_modules()
             if isinstance(module, nn.Linear) and ".attn." in f".{name}"}
    names = []
    for target in targets:
        matching = [name for name in found if name.endswith(f"attn.{target}")]
        if not matching:
            have = sorted({name.rsplit(".", 1)[-1] for name in found})
            raise ConfigError(f"LoRA target {target!r} names no attention projection of this backbone: it has "
                              f"{', '.join(have) or 'none'}")
        names += matching
    order = {name: i for i, name in enumerate(found)}
    return sorted(names, key=order.__getitem__)


def add_lora(backbone: nn.Module, settings: LoraSettings, *, seed: int) -> nn.Module:
    """Wrap ``backbone``'s attention projections with LoRA adapters, in place; freeze everything else.

    Parameters
    ----------
    backbone
        A timm ViT (or any model whose attention projections are named ``*.attn.qkv`` / ``*.attn.proj``).
    settings
        Rank, alpha, dropout and targets.
    seed
        Fixes the adapters' random initial A (B starts at zero) without touching torch's global random state.

    Returns
    -------
    nn.Module
        ``backbone`` itself; ``backbone.dinoxfer_lora`` records the settings and the wrapped module names.
    """
    from peft import LoraConfig, inject_adapter_in_model

    settings.validate("lora")
    modules = attention_projections(backbone, tuple(settings.targets))
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=modules, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, backbone)
    backbone.dinoxfer_lora = {"rank": settings.rank, "alpha": settings.alpha, "dropout": settings.dropout,
                              "targets": list(settings.targets), "modules": modules}
    return backbone


def lora_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (peft's names without the adapter name), detached copies."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(backbone).items()}


def load_lora_state_dict(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter weights into a backbone that :func:`add_lora` wrapped with the same settings."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(backbone, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(f"saved adapters do not fit this backbone: missing {missing[:3]}, unexpected "
                          f"{list(result.unexpected_keys)[:3]}; add_lora with the saved settings first")


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in module.parameters())
