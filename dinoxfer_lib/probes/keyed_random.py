"""Counter-based random numbers: each model's draws depend only on its key and on what is drawn where.

The batched trainer trains many probe models as one; a torch generator would hand each model whatever part of
a shared stream its position in the batch gets, so a set's results would change when another set joins the
batch, and a one-model reference could not reproduce them. Here every random number is a hash of
(model key, purpose, epoch, step, layer, element position), computed with tensor ops for all models at once:

- a model trained alone (the exact reference) or beside any others draws the same numbers;
- CPU and GPU draw the same numbers (integer arithmetic is exact);
- nothing is stored up front (the resampling draws of 300 epochs, the dropout masks of every step).

A dropout mask needs only as many random bits per unit as its rate needs: p = 0.5 keeps a unit when one bit is
set, so one hashed word masks 32 units (:func:`dropout_mask`); hashing a word per unit cost the batched trainer
on a CPU about as much time as its matrix products.

The hash is Wellons' ``lowbias32`` (two multiply/xor-shift rounds, bijective on 32 bits) on int32 lanes:
multiplication wraps modulo 2**32 and the shifts are made logical by masking. :func:`mix32_int` is the same
function in plain Python; the tests check that torch's int32 arithmetic agrees with it.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import torch

_C1 = 0x7FEB352D
_C2 = 0x846CA68B - (1 << 32)  # 0x846CA68B as a signed int32
# purposes: separate streams for the two kinds of draw
RESAMPLE = 1
DROPOUT = 2


def mix32(x: torch.Tensor) -> torch.Tensor:
    """``lowbias32`` of every element of an int32 tensor (a new tensor; the input is left alone)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x *= _C1
    x ^= (x >> 15) & 0x1FFFF
    x *= _C2
    x ^= (x >> 16) & 0xFFFF
    return x


def mix32_int(value: int) -> int:
    """Reference ``lowbias32`` on a Python int, result in [0, 2**32)."""
    x = value & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def model_key(seed: int, *parts: object) -> int:
    """A model's int32 key from the run seed and names (set, probe, fold): stable across runs and machines."""
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little", signed=True)


def derive_keys(keys: torch.Tensor, *tags: int) -> torch.Tensor:
    """``(M,)`` int32 keys of one draw: the model keys hashed with each tag (purpose, epoch, step, ...) in turn."""
    for tag in tags:
        keys = mix32(keys ^ _signed(mix32_int(tag)))
    return keys


def key_table(keys: torch.Tensor, purpose: int, sizes: tuple[int, ...]) -> torch.Tensor:
    """All draw keys of a run at once: ``table[i, j, ..., m] == derive_keys(keys, purpose, i, j, ...)[m]``.

    Returns an int32 tensor ``(*sizes, M)``, e.g. (epochs, steps, layers, models) for the dropout masks.
    """
    table = derive_keys(keys, purpose)  # (M,)
    for size in sizes:
        tags = mix32(torch.arange(size, dtype=torch.int32, device=keys.device)).view(size, 1)  # (size, 1)
        table = mix32(table.unsqueeze(-2) ^ tags)  # (..., size, M)
    return table


def random_words(keys: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(M, *shape)`` int32 words, uniform over all 2**32 values, element i of model m from (keys[m], i) alone."""
    words = _position_hash(shape, keys.device) ^ keys.view(-1, *[1] * len(shape))
    return _mix32_(words)


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """``(M, n)`` float64 uniforms in [0, 1) (32 random bits each)."""
    return (random_words(keys, (n,)).double() + 2.0**31) / 2.0**32


def dropout_mask(keys: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """``(M, *shape)`` float32 dropout multipliers from ``keys`` ``(M,)``: 1/(1-p) (kept) with probability exactly
    1 - p (up to 2**-32), else 0, as ``nn.Dropout(p)`` applies them in training mode.

    A unit reads a chunk of k random bits, k the fewest of 1, 2, 4, 8 with p·2**k an integer, and is kept when
    the chunk is at least p·2**k: p = 0.5 takes one bit, so one hashed word masks 32 units. The chunks are read
    a byte at a time from a table of the multipliers of all 256 bytes (one pass to write the mask). Other rates
    compare a whole word per unit.
    """
    scale = 1.0 / (1.0 - p)
    bits = next((k for k in (1, 2, 4, 8) if (float(p) * 2**k).is_integer()), None)
    *lead, units = shape
    if bits is None:
        threshold = round(p * 2.0**32) - 2**31  # words are uniform over the int32 range
        return random_words(keys, shape).ge_(threshold).to(torch.float32).mul_(scale)
    words = random_words(keys, (*lead, -(-units // (32 // bits))))  # (M, ..., words)
    shifts = torch.arange(0, 32, 8, dtype=torch.int32, device=keys.device)  # (a host list would sync a GPU)
    byte_values = (words.unsqueeze(-1) >> shifts).bitwise_and_(255).flatten()  # low byte first
    table = _byte_table(bits, round(p * 2**bits), scale, keys.device)  # (256, 8 // bits)
    return table.index_select(0, byte_values).view(len(keys), *lead, -1)[..., :units]


def keyed_dropout(h: torch.Tensor, keys: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout of ``h`` ``(M, batch, units)`` as ``nn.Dropout(p)`` in training mode, mask from ``keys`` ``(M,)``."""
    if p == 0:
        return h
    return h * dropout_mask(keys, tuple(h.shape[1:]), p)


def _mix32_(x: torch.Tensor) -> torch.Tensor:
    """:func:`mix32` in place, with one scratch tensor: on the CPU a fresh large tensor costs about as much as
    the arithmetic on it."""
    shifted = torch.empty_like(x)
    for shift, multiplier in ((16, _C1), (15, _C2), (16, None)):
        torch.bitwise_right_shift(x, shift, out=shifted)
        x ^= shifted.bitwise_and_((1 << (32 - shift)) - 1)  # logical shift: drop the sign-extended bits
        if multiplier is not None:
            x *= multiplier
    return x


@lru_cache(maxsize=8)
def _byte_table(bits: int, threshold: int, scale: float, device: torch.device) -> torch.Tensor:
    """``(256, 8 // bits)`` float32: the dropout multiplier of each ``bits``-bit chunk (low first) of every byte."""
    shifts = torch.arange(0, 8, bits)
    chunks = (torch.arange(256)[:, None] >> shifts) & (2**bits - 1)
    return ((chunks >= threshold) * scale).to(torch.float32).to(device)


@lru_cache(maxsize=32)
def _position_hash(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    # hashing the flat position first decorrelates neighbouring elements before the key is mixed in
    n = 1
    for size in shape:
        n *= size
    return mix32(torch.arange(n, dtype=torch.int32, device=device).view(shape))


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value
