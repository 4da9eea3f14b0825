"""Block-wise masks over the patch grid of the student's global crops (iBOT, as DINOv2 draws them).

Of the ``n`` global crops of a step, ``int(n * sample_probability)`` get a mask, the others none. The masked crops'
target ratios are spread evenly over ``ratio_range`` (crop i draws its ratio from the i-th of equal sub-intervals),
so every step sees a range of difficulties; which crops are masked is shuffled. A mask is built from rectangles of
at least ``min_block`` patches and aspect ratio in [min_aspect, 1 / min_aspect], each covering at most
``max_block_share`` of the grid, added until the target count is reached (a rectangle may not add more patches than
are still wanted; after ten failed placements the mask stays a little short).

All randomness comes from one :class:`random.Random` the trainer seeds from (seed, epoch, step), drawn for the
global batch: a resumed run and every process of a distributed run draw the same masks.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

# DINOv2's MaskingGenerator defaults (dinov2/data/masking.py; max_num_patches = half the grid in train.py).
MIN_BLOCK = 4
MIN_ASPECT = 0.3
MAX_BLOCK_SHARE = 0.5
PLACEMENT_TRIES = 10


def block_masks(
    n_crops: int, grid: tuple[int, int], *, ratio_range: tuple[float, float], sample_probability: float,
    rng: random.Random,
) -> torch.Tensor:
    """Masks of ``n_crops`` global crops over a ``grid`` (rows, columns) of patches: ``(n_crops, rows * columns)``
    bool, True where the student sees the mask token instead of the patch."""
    rows, cols = grid
    n_patches = rows * cols
    n_masked = int(n_crops * sample_probability)
    bounds = np.linspace(ratio_range[0], ratio_range[1], n_masked + 1)
    masks = [block_mask(grid, int(n_patches * rng.uniform(bounds[i], bounds[i + 1])), rng=rng)
             for i in range(n_masked)]
    masks += [np.zeros(grid, dtype=bool)] * (n_crops - n_masked)
    rng.shuffle(masks)
    return torch.from_numpy(np.stack(masks).reshape(n_crops, n_patches))


def block_mask(grid: tuple[int, int], target: int, *, rng: random.Random) -> np.ndarray:
    """One (rows, columns) bool mask of about ``target`` patches made of rectangles (see the module docstring)."""
    rows, cols = grid
    mask = np.zeros(grid, dtype=bool)
    max_block = MAX_BLOCK_SHARE * rows * cols
    log_aspect = (math.log(MIN_ASPECT), math.log(1 / MIN_ASPECT))
    count = 0
    while count < target:
        budget = min(target - count, max_block)
        added = 0
        for _ in range(PLACEMENT_TRIES):
            area = rng.uniform(MIN_BLOCK, budget)
            aspect = math.exp(rng.uniform(*log_aspect))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if h >= rows or w >= cols:
                continue
            top, left = rng.randint(0, rows - h), rng.randint(0, cols - w)
            new = h * w - int(mask[top:top + h, left:left + w].sum())
            if 0 < new <= budget:  # the rectangle adds patches, and no more than are still wanted
                mask[top:top + h, left:left + w] = True
                added = new
                break
        if added == 0:
            break
        count += added
    return mask


def mask_weights(masks: torch.Tensor) -> torch.Tensor:
    """1 / (masked patches of its crop) for every masked patch, in ``masks[masks]`` order: each masked crop then
    weighs the same in the iBOT loss, however many patches it hides. (n_crops, N) bool → (M,)."""
    per_crop = 1 / masks.sum(dim=1, keepdim=True).clamp(min=1).float()  # (n_crops, 1)
    return per_crop.expand_as(masks)[masks]
