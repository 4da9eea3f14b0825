"""Chapter 90 (Performance): readings of this run's benchmarks and of the recorded GPU figures, and the targets.

The speed targets are GPU ones (:data:`GPU_TARGETS`: embedding and DINO steps as fractions of the card's bf16
peak, the DINO step against a faithful reference, i.e. the official ``main_dino.py`` defaults, and the probe
suite's wall time). On a CPU both sides of a benchmark do the same fp32 arithmetic, so a ratio there is
information, shown beside the ceiling this run measured, not a target.
"""

from __future__ import annotations

import operator

import pandas as pd

from dinoxfer_lib.bench.records import OLD_DINO_REFERENCE, GpuRecord, latest_result
from dinoxfer_lib.paper import OPENCELL_IMAGES

# (benchmark, field, comparison, target, what it means)
GPU_TARGETS = (
    ("embedding", "mfu", ">=", 0.50, "ViT-B/8 at 224 px, bf16, eager"),
    ("embedding", "compiled_mfu", ">=", 0.50, "the same, torch.compile"),
    ("dino", "mfu", ">=", 0.40, "ViT-B/8 with the paper's multi-crop"),
    ("dino", "ratio", ">=", 2.0, "against main_dino.py's defaults (fp16 autocast + GradScaler, 10 workers)"),
    ("probe_suite", "ours_s", "<=", 30.0, "Table III at the paper's size, 300 epochs"),
)
_COMPARE = {">=": operator.ge, "<=": operator.le}


def _mark(met: bool | None) -> str:
    return "—" if met is None else "✓" if met else "✗"


def target_table(measured: list[dict], runs: list[GpuRecord]) -> pd.DataFrame:
    """Each GPU target beside the figure it is judged on (this run's when it ran the paper size on a GPU, else the
    latest recorded one), then this run's CPU ratios as information beside their measured ceiling."""
    here = {result["benchmark"]: result for result in measured}
    rows = []
    for benchmark, field, comparison, target, what in GPU_TARGETS:
        result, source, note = here.get(benchmark), "this run", ""
        if result is None or result["device"] != "cuda" or result.get("size") != "paper":
            latest = latest_result(runs, benchmark)
            result, source = (None, "not measured") if latest is None else (
                latest[0], f"recorded {latest[1].data['date']} on {latest[1].gpu}")
        value = None if result is None else result.get(field)
        met = None if value is None else bool(_COMPARE[comparison](value, target))
        if field == "ratio" and result is not None and result.get("reference") == OLD_DINO_REFERENCE:
            met, note = None, "measured against an fp32 reference: re-record on a GPU"
        rows.append({"benchmark": benchmark, "where": "GPU", "target": f"{_field_label(field)} {comparison} "
                     f"{_format(field, target)}", "what": what, "measured": _format(field, value), "source": source,
                     "met": _mark(met), "note": note})
    for benchmark, result in here.items():
        if result["device"] != "cpu":
            continue
        ceiling = cpu_ceiling(result)
        rows.append({"benchmark": benchmark, "where": "CPU", "target": "information", "what": "same fp32 arithmetic "
                     "on both sides", "measured": f"{result['ratio']:.2f}× the reference", "source": "this run",
                     "met": "—", "note": "" if ceiling is None else f"ceiling {ceiling:.2f}× (backbone alone)"})
    return pd.DataFrame(rows).set_index(["benchmark", "where"])


def _field_label(field: str) -> str:
    return {"mfu": "MFU", "compiled_mfu": "MFU compiled", "ratio": "ratio", "ours_s": "seconds"}[field]


def _format(field: str, value: float | None) -> str:
    if value is None:
        return "—"
    if field.endswith("mfu"):
        return f"{value:.1%}"
    return f"{value:.2f}×" if field == "ratio" else f"{value:.1f} s"


def cpu_ceiling(result: dict) -> float | None:
    """The most any extractor could reach against the reference on this machine (the backbone alone on prepared
    inputs), for the embedding benchmark; None for the others."""
    if result["benchmark"] != "embedding" or "model_only_images_per_s" not in result:
        return None
    return result["model_only_images_per_s"] / result["reference_images_per_s"]


def cpu_embedding_reading(result: dict) -> str:
    """Where this run's embedding time went: the reference's preprocessing share and the backbone-alone ceiling."""
    return (f"In this run ({result['device']}) {result['reference_preprocess_share']:.0%} of the reference's embedding "
            f"time went into preprocessing, and the backbone alone on prepared inputs ran {cpu_ceiling(result):.1f}× "
            "faster than the reference: the most any extractor can reach here, since both sides do the same "
            "arithmetic.")


def ratio_lines(measured: list[dict]) -> str:
    """One bullet per benchmark of this run: its ratio to the reference, and on which device."""
    return "\n".join(f"- **{r['benchmark']}**: {r['ratio']:.2f}× the reference on {r['device']}." for r in measured)


def record_header(run: GpuRecord) -> str:
    """Where and when a GPU record was made, and the card's measured bf16 ceiling."""
    return (f"**{run.device}**, {run.when}; {run.software}; a bf16 8192³ matrix product ran at "
            f"{run.bf16_matmul_tflops} TFLOP/s there (MFU is against the datasheet's 989).")


def dino_reading(result: dict, run: GpuRecord) -> str:
    """What the recorded DINO figures mean for a user: the batch that fits and the paper run's cost."""
    text = (f"Our step is {result['ratio']:.1f}× the reference ({result['reference']}) at batch "
            f"{result['batch_size']} on the {run.gpu}.")
    if result["reference"] == OLD_DINO_REFERENCE:
        text += (" That reference ran in fp32, while main_dino.py trains in fp16 by default: the ratio against "
                 "the faithful reference is lower, and is measured by the next GPU run.")
    if "largest_batch" in result:
        text += (f" The largest batch tried that fits is **{result['largest_batch']}**, and the paper's 300-epoch "
                 f"OpenCell run would take about **{result['paper_run_hours']} h** on that one GPU.")
    return text


def embedding_reading(result: dict, run: GpuRecord) -> str:
    """Where the recorded extractor stands against the backbone alone and the MFU target, and why."""
    variants = run.variants()
    bf16 = variants.query("precision == 'bf16 weights' and attention == 'default'").set_index("mode")
    text = (f"End to end over {result['n_images']:,} images (uint16 {result['stored_size']} px images resized and "
            f"scaled on the GPU, then embedded) the extractor reaches **{result['mfu']:.1%} MFU** "
            f"({result['ours_images_per_s']:.0f} images/s), "
            f"{result['ours_images_per_s'] / result['model_only_images_per_s']:.0%} of the backbone alone over as "
            f"many images.")
    if "compiled_mfu" in result:
        payback = result["compile_seconds"] / (1 / result["ours_images_per_s"] - 1 / result["compiled_images_per_s"])
        mode = result.get("compile_mode", "default")
        how = ("`compile=True` (`embed.compile: true` in a profile)" if mode == "default"
               else f"`compile=\"{mode}\"` (`embed.compile: {mode}`)")
        text += (f" With {how} it reaches **{result['compiled_mfu']:.1%}"
                 f"** ({result['compiled_images_per_s']:.0f} images/s) after {result['compile_seconds']:.0f} s of "
                 f"compilation on a fresh machine, which pays for itself only after about {round(payback, -4):,.0f} "
                 f"images in one process: not on OpenCell's {OPENCELL_IMAGES:,}, so it is off by default.")
    text += f" The backbone alone with bf16 weights reaches {bf16.loc['eager', 'mfu']:.1%} eager"
    if "torch.compile" in bf16.index:
        text += f" and {bf16.loc['torch.compile', 'mfu']:.1%} compiled"
    for mode in (m for m in bf16.index if m.startswith("torch.compile ")):  # the other compile modes
        text += f" ({bf16.loc[mode, 'mfu']:.1%} with {mode.removeprefix('torch.compile ')})"
    text += " in a short burst (table above): that bounds any extractor of this model on this card."
    overhead = run.overhead()
    if overhead:
        drop = 1 - overhead["backbone_sustained_images_per_s"] / overhead["backbone_burst_images_per_s"]
        fixed_ms = 1000 * (overhead["one_batch_extractor_s"] - overhead["one_batch_backbone_s"])
        text += (f" Run for 24 batches in a row instead of 4 it is {drop:.0%} slower (under sustained load; the clocks "
                 f"were not read). The rest is a fixed cost per call of about {fixed_ms:.0f} ms (one batch through "
                 f"the extractor against the backbone alone: the bf16 copy of the backbone, the first batch's read "
                 f"and transfer, the output's setup) and the per-batch conversion, resize and percentile scaling")
        profile = run.batch_profile_ms()
        if profile:
            preprocess = sum(v for k, v in profile.items() if k.startswith(("uint16", "antialiased", "percentile")))
            encoder_ms = profile["encoder (scaling + bf16 ViT-B/8)"]
            text += f" ({preprocess:.1f} ms against the encoder's {encoder_ms:.0f} ms per batch of 256; one profile)"
        text += "."
    return text


def what_this_means(measured: list[dict], runs: list[GpuRecord]) -> str:
    """The chapter's conclusion: which benchmarks beat their reference in this run, and how many GPU targets the
    figures they are judged on meet (:func:`target_table`)."""
    faster = [r["benchmark"] for r in measured if r.get("ratio") is not None and r["ratio"] > 1]
    slower = [r["benchmark"] for r in measured if r.get("ratio") is not None and r["ratio"] <= 1]
    device = measured[0]["device"] if measured else "this machine"
    lines = [f"- **This run ({device}).** " + (f"{', '.join(faster)} beat their reference" if faster else
                                               "No benchmark beat its reference")
             + (f"; {', '.join(slower)} did not" if slower else "") + ", measured side by side on the same data."]
    targets = target_table(measured, runs).xs("GPU", level="where")
    judged = targets[targets["met"] != "—"]
    met = int((judged["met"] == "✓").sum())
    lines.append(f"- **GPU targets.** {met} of the {len(judged)} targets with a figure to judge are met"
                 + (f"; {len(targets) - len(judged)} have none yet" if len(judged) < len(targets) else "")
                 + ". The targets table above names the machine and date of each figure.")
    return "\n".join(lines)
