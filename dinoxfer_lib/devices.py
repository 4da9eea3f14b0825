"""Which device to compute on, waiting for it, and raw images on it: shared by the embedder, the trainers and the
benchmarks."""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` → the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer measures it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory; uint16 travels as int16 (the same bytes), since PyTorch's uint16 dtype
    has only limited kernel support. :func:`raw_to_float` undoes that on the device."""
    return torch.from_numpy(array.view(np.int16) if array.dtype == np.uint16 else array)


def raw_to_float(x: torch.Tensor, *, uint16: bool) -> torch.Tensor:
    """Raw intensities as float32 on ``x``'s device; ``uint16`` says that ``x`` holds uint16 bytes as int16.

    A CPU reinterprets them as uint16 and converts directly (faster than widening); other devices widen them and
    mask back to 0..65535, because their uint16 kernels are limited.
    """
    if not uint16:
        return x.float()
    if x.device.type == "cpu":
        return x.view(torch.uint16).float()
    return (x.int() & 0xFFFF).float()
