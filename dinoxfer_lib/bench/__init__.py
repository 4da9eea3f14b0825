"""Benchmarks: each times our implementation against a plain reference in the same run and reports the ratio.

A ratio survives a noisy or shared machine; an absolute time does not. ``dinoxfer bench`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dinoxfer_lib.errors import ConfigError


def _embedding(size: str, device: str | None) -> dict:
    from dinoxfer_lib.bench.embedding import bench_embedding

    sizes = {
        "small": dict(arch="vit_micro", img_size=32, n_images=128),
        "demo": dict(arch="vit_micro", img_size=64, n_images=512),
        "paper": dict(arch="vit_base_patch8", img_size=224, n_images=2048, batch_size=256),
    }
    return bench_embedding(**sizes[size], device=device)


BENCHMARKS: dict[str, Callable[[str, str | None], dict]] = {"embedding": _embedding}


def run_benchmarks(names: Iterable[str], *, size: str = "demo", device: str | None = None) -> list[dict]:
    """Run the named benchmarks at one problem size; unknown names are an error listing the known ones."""
    names = list(names)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(BENCHMARKS)}")
    return [{**BENCHMARKS[name](size, device), "size": size} for name in names]
