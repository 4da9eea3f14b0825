"""Benchmarks recorded on GPU machines: writing them, and reading them back as tables.

The book is built on machines without a GPU, so GPU figures cannot come from the run that builds it. They are
measured with ``dinoxfer bench --size paper --record`` on a GPU machine, which also times the backbone variants
(:mod:`dinoxfer_lib.bench.variants`) and writes one JSON file per machine and run into ``book/performance/records/``
beside the book (``--record-dir`` chooses another folder), naming the device, the software and the commit of every
figure. The performance chapter reads them through :func:`recorded_runs` and shows them as recorded figures, never
as this run's.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dinoxfer_lib.provenance import commit_label, git_state, package_versions

# The records the book ships, in a checkout: ``book/performance/records`` at the repository's root.
RECORD_DIR = Path(__file__).resolve().parents[2] / "book" / "performance" / "records"
# What the DINO reference was before it followed main_dino.py's defaults (records without a "reference" field).
OLD_DINO_REFERENCE = "fp32, DataLoader (before the reference followed main_dino.py's fp16 defaults)"


@dataclass(frozen=True)
class GpuRecord:
    """One recorded GPU run: where and when, with which software, and every figure it measured."""

    path: Path
    data: dict

    @property
    def gpu(self) -> str:
        return self.data["gpu"]

    @property
    def device(self) -> str:
        return self.data["device"]

    @property
    def when(self) -> str:
        """Date, and time of day where recorded (early records have none)."""
        return " ".join(filter(None, (self.data["date"], self.data.get("time"))))

    @property
    def software(self) -> str:
        return self.data["software"]

    @property
    def bf16_matmul_tflops(self) -> float:
        return self.data["bf16_matmul_tflops"]

    def result(self, benchmark: str) -> dict | None:
        """This run's figures of ``benchmark`` (the DINO reference named, old records included), or None."""
        for result in self.data["results"]:
            if result["benchmark"] == benchmark:
                if benchmark == "dino":
                    return {"reference": OLD_DINO_REFERENCE, **result}
                return result
        return None

    def variants(self) -> pd.DataFrame | None:
        """The backbone alone per precision, attention kernel and compile mode (:mod:`~dinoxfer_lib.bench.variants`)."""
        variants = self.data.get("embedding_model_variants")
        if variants is None:
            return None
        return pd.DataFrame(variants["rows"]).reindex(
            columns=["precision", "mode", "attention", "images_per_s", "tflops", "mfu", "compile_seconds", "error"])

    def extractor_steps(self) -> list[dict]:
        """The extractor changes this record measured one by one (commit, change, images/s, MFU)."""
        return list(self.data.get("embedding_steps", []))

    def compile_modes(self) -> tuple[str, pd.DataFrame] | None:
        """(what was compared, one row per compile mode) of the extractor end to end, where recorded."""
        modes = self.data.get("embedding_compile_modes")
        return None if modes is None else (modes["what"], pd.DataFrame(modes["rows"]))

    def overhead(self) -> dict | None:
        """Sustained vs burst throughput of the backbone and one batch through extractor vs backbone, in seconds."""
        return self.data.get("embedding_overhead")

    def batch_profile_ms(self) -> dict | None:
        """Milliseconds per step of one extractor batch (one profile), where recorded."""
        return self.data.get("embedding_batch_profile", {}).get("ms")


def recorded_runs(folder: str | Path = RECORD_DIR) -> list[GpuRecord]:
    """Every recorded GPU run in ``folder``, oldest first (by date, then time of day where recorded)."""
    records = [GpuRecord(path, json.loads(path.read_text())) for path in Path(folder).glob("*.json")]
    return sorted(records, key=lambda r: (r.data["date"], r.data.get("time", "")))


def latest_result(runs: list[GpuRecord], benchmark: str) -> tuple[dict, GpuRecord] | None:
    """(the latest recorded result of ``benchmark``, its run), or None."""
    found = [(result, run) for run in runs if (result := run.result(benchmark)) is not None]
    return found[-1] if found else None


def recorded_summary(runs: list[GpuRecord]) -> pd.DataFrame:
    """One row per recorded benchmark: where and when, ours vs the reference, the ratio, MFU and GPU memory."""
    rows = []
    for run in runs:
        for result in run.data["results"]:
            result = run.result(result["benchmark"])
            rate = "ours_images_per_s" in result
            rows.append({
                "benchmark": result["benchmark"], "gpu": run.gpu, "date": run.data["date"],
                "unit": "images/s" if rate else "seconds",
                "ours": result["ours_images_per_s" if rate else "ours_s"],
                "reference": result["reference_images_per_s" if rate else "reference_s"],
                "ratio": result["ratio"], "mfu": result.get("mfu"), "peak_memory_gib": result.get("peak_memory_gib"),
                "commit": result.get("commit"),
            })
    return pd.DataFrame(rows)


def dino_batch_table(result: dict) -> pd.DataFrame:
    """The recorded DINO step at the benchmark's batch and at each batch of its sweep (until one did not fit)."""
    rows = [{"batch_size": result["batch_size"], "images_per_s": result["ours_images_per_s"],
             "peak_memory_gib": result.get("peak_memory_gib"), "mfu": result.get("mfu"), "fits": True},
            *result.get("sweep", [])]
    return pd.DataFrame(rows).set_index("batch_size").reindex(columns=["images_per_s", "peak_memory_gib", "mfu",
                                                                      "fits"])


def extractor_steps_table(runs: list[GpuRecord]) -> pd.DataFrame:
    """Every record's extractor steps, each change once (a record may repeat an earlier one's)."""
    steps = [step for run in runs for step in run.extractor_steps()]
    if not steps:
        return pd.DataFrame()
    return pd.DataFrame(steps).drop_duplicates(subset=["commit", "change"], ignore_index=True)


def bf16_matmul_tflops(device, side: int = 8192, repeats: int = 20) -> float:
    """The card's practical bf16 ceiling: TFLOP/s of a large matrix product on random data."""
    import time

    import torch

    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize(device)
    return round(repeats * 2 * side**3 / (time.perf_counter() - started) / 1e12)


def make_record(results: list[dict], variants: list[dict] | None, device) -> dict:
    """One recorded GPU run: the device, the software, the commit and every figure (what the chapter reads);
    ``variants`` (the backbone alone, :mod:`~dinoxfer_lib.bench.variants`) where the run timed the extractor.
    The chapter reads each benchmark from the latest run that recorded it."""
    import torch

    properties = torch.cuda.get_device_properties(device)
    versions, git = package_versions(), git_state()
    record = {
        "device": f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB)",
        "gpu": properties.name,
        "date": datetime.date.today().isoformat(),
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC"),
        "software": f"Python {versions['python']}, torch {torch.__version__}, timm {versions.get('timm', '?')}, "
                    f"CUDA {torch.version.cuda}",
        "bf16_matmul_tflops": bf16_matmul_tflops(device),
        "results": [{**result, "commit": commit_label(git),
                     "source_sha256": git["source_sha256"][:12]} for result in results],
    }
    if variants is not None:
        record["embedding_model_variants"] = {"command": "python -m dinoxfer_lib.bench.variants", "rows": variants}
    return record


def write_record(record: dict, folder: str | Path = RECORD_DIR) -> Path:
    """``<gpu>_<date>.json`` in ``folder`` (:func:`write_numbered`)."""
    stem = f"{record['gpu'].lower().replace('nvidia', '').strip().replace(' ', '_')}_{record['date']}"
    return write_numbered(record, folder, stem)


def write_numbered(record: dict, folder: str | Path, stem: str) -> Path:
    """``record`` as ``<stem>.json`` in ``folder``; an existing file of that name is kept and the new one numbered
    (``<stem>_2.json``, ...), so a record once written is never replaced."""
    folder = Path(folder)
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}_{n}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))
    return path
