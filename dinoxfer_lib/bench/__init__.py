"""Benchmarks: each times our implementation against a plain reference in the same run and reports the ratio.

A ratio survives a noisy or shared machine; an absolute time does not. ``dinoxfer bench`` runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pandas as pd

from dinoxfer_lib.errors import ConfigError


def _embedding(size: str, device: str | None, compile_mode: str | None = None) -> dict:
    from dinoxfer_lib.bench.embedding import bench_embedding
    from dinoxfer_lib.paper import OPENCELL_IMAGES

    sizes = {
        "small": dict(arch="vit_micro", img_size=32, n_images=128),
        "demo": dict(arch="vit_micro", img_size=64, n_images=512),
        # OpenCell's image count, so the first batch's read weighs as much as in the study; also timed compiled
        "paper": dict(arch="vit_base_patch8", img_size=224, n_images=OPENCELL_IMAGES, batch_size=256, compiled=True),
    }
    options = sizes[size] if compile_mode is None else {**sizes[size], "compiled": compile_mode}
    return bench_embedding(**options, device=device)


def _dino(size: str, device: str | None) -> dict:
    from dinoxfer_lib.bench.dino import bench_dino

    sizes = {
        "small": dict(arch="vit_micro", img_size=32, batch_size=16, steps=2, n_local_crops=2, local_crop_size=16,
                      out_dim=256),
        "demo": dict(arch="vit_micro", img_size=64, batch_size=64, steps=3, n_local_crops=2, local_crop_size=32,
                     out_dim=4096),
        # ViT-B/8 at 224 px with the paper's multi-crop. Measured on a CPU, an image with its 10 views holds ~1.9 GiB of
        # fp32 activations, so the fp32 reference's batch of 32 (~62 GiB) fits an 80 GB card; ours (bf16) then
        # sweeps larger batches to the largest that fits.
        "paper": dict(arch="vit_base_patch8", img_size=224, batch_size=32, steps=5, n_local_crops=8,
                      local_crop_size=96, out_dim=65536, batch_sweep=(64, 96, 128)),
    }
    return bench_dino(**sizes[size], device=device)


def _probes(size: str, device: str | None) -> dict:
    from dinoxfer_lib.bench.probes import bench_probe_suite

    sizes = {
        "small": dict(n=480, dim=64, n_sets=2, n_folds=2, epochs=2, reference_models=2),
        # the demo's native (192-d) and bag-of-channels (384-d) sets; the reference timed on one model per set
        "demo": dict(n=2400, dim=(192, 384), n_sets=5, n_folds=5, epochs=10, reference_models=5),
        # Table III at the paper's size (~5.5k images, ViT-B 1,536-d features, 300 epochs); GPU
        "paper": dict(n=5500, dim=1536, n_sets=5, n_folds=5, epochs=300, reference_models=2),
    }
    return bench_probe_suite(**sizes[size], device=device)


def _lora_step(size: str, device: str | None) -> dict:
    from dinoxfer_lib.adapt.bench import SIZES, bench_lora_step

    return bench_lora_step(**SIZES["lora_step"][size], device=device)


def _seg_head_epoch(size: str, device: str | None) -> dict:
    from dinoxfer_lib.adapt.bench import SIZES, bench_seg_head_epoch

    return bench_seg_head_epoch(**SIZES["seg_head_epoch"][size], device=device)


BENCHMARKS: dict[str, Callable[[str, str | None], dict]] = {"embedding": _embedding, "dino": _dino,
                                                            "probes": _probes, "lora_step": _lora_step,
                                                            "seg_head_epoch": _seg_head_epoch}


def run_benchmarks(names: Iterable[str], *, size: str = "demo", device: str | None = None,
                   compile_mode: str | None = None) -> list[dict]:
    """Run the named benchmarks at one problem size; unknown names are an error listing the known ones.

    ``compile_mode`` also times the embedding extractor compiled in that mode (at the paper size it is timed
    compiled in torch's default mode unless another is given)."""
    names = list(names)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(BENCHMARKS)}")
    options = {"embedding": {"compile_mode": compile_mode}} if compile_mode else {}
    return [{**BENCHMARKS[name](size, device, **options.get(name, {})), "size": size} for name in names]


def summary_table(results: Iterable[dict], *, all_fields: bool = False) -> pd.DataFrame:
    """One line per benchmark: ours and the reference in the benchmark's own unit, the ratio and the device; with
    ``all_fields``, one column per benchmark and a row for every field any of them recorded."""
    if all_fields:
        return pd.DataFrame(list(results)).set_index("benchmark").T
    rows = []
    for result in results:
        rate = "ours_images_per_s" in result
        ours, reference = ("ours_images_per_s", "reference_images_per_s") if rate else ("ours_s", "reference_s")
        rows.append({"benchmark": result["benchmark"], "unit": "images/s" if rate else "seconds",
                     "ours": result[ours], "reference": result[reference], "ratio": result["ratio"],
                     "device": result["device"], "size": result.get("size")})
        if "dinov2_ratio" in result:  # our DINOv2 step against our DINO step on the same model
            rows.append({**rows[-1], "benchmark": "dino: DINOv2 step vs DINO step",
                         "ours": result["dinov2_images_per_s"], "reference": result[ours],
                         "ratio": result["dinov2_ratio"]})
    return pd.DataFrame(rows).set_index("benchmark")


def ratio_lines(result: dict) -> list[str]:
    """What ``dinoxfer bench`` prints for one result: its ratio to the reference, and the DINOv2 step's ratio to
    the DINO step where the result has one."""
    lines = [f"{result['benchmark']}: {result['ratio']:.2f}x the reference ({json.dumps(result, default=str)})"]
    if "dinov2_ratio" in result:
        lines.append(f"{result['benchmark']}: the DINOv2 step runs at {result['dinov2_ratio']:.2f}x the DINO step's "
                     f"images/s on the same model ({result['dinov2_images_per_s']} vs {result['ours_images_per_s']})")
    return lines
