"""What every chapter shows about its own run: the data banner, provenance, and a config beside the paper's.

Chapters must say plainly when their numbers come from synthetic data, and which run produced them; these helpers
write that text from the objects themselves so no notebook hard-codes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.store import ArtifactStore


def data_banner(datasets: Mapping[str, ImageSet], *, profile: str) -> str:
    """A MyST admonition saying which domains are synthetic stand-ins and which are real data."""
    synthetic = [name for name, d in datasets.items() if d.synthetic]
    real = [name for name, d in datasets.items() if not d.synthetic]
    if synthetic:
        lines = [
            ":::{warning}",
            f"**Synthetic data.** Profile `{profile}`: the {', '.join(synthetic)} domain(s) on this page are the "
            "embedded procedural stand-ins, not the real datasets. Their numbers test the pipeline and are **not "
            "comparable with the paper's**. To run on real data, see *Running on real data and a GPU*.",
        ]
        if real:
            lines.append(f"Real data: {', '.join(real)}.")
        lines.append(":::")
        return "\n".join(lines)
    return f":::{{note}}\nProfile `{profile}`: real data for {', '.join(real)}.\n:::"


def provenance_table(store: ArtifactStore, stages: Iterable[str]) -> pd.DataFrame:
    """One row per stage: when and where it was computed, how long it took, from which commit and config."""
    rows = []
    for stage in stages:
        record = store.load(stage).provenance
        git = record.get("git") or {}
        commit = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
        rows.append(
            {
                "stage": stage,
                "computed": record.get("created"),
                "wall time (s)": record.get("wall_time_s"),
                "device": record.get("device"),
                "commit": commit,
                "config hash": record.get("config_hash", "")[:12],
            }
        )
    return pd.DataFrame(rows).set_index("stage")


def recipe_table(config, paper, *, compared: Collection[str] | None = None) -> pd.DataFrame:
    """A config section beside the paper's values (another instance of the same dataclass), differences marked.

    ``compared`` names the fields the paper fixes; other fields show "—" for the paper (book-only options).
    """
    rows = []
    for key, ours in dataclasses.asdict(config).items():
        in_paper = compared is None or key in compared
        theirs = getattr(paper, key)
        rows.append({"setting": key, "this run": _show(ours), "paper": _show(theirs) if in_paper else "—",
                     "differs": "yes" if in_paper and ours != theirs else ""})
    return pd.DataFrame(rows).set_index("setting")


def _show(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def value_range(values: pd.Series, fmt: str = ".2f") -> str:
    """``low–high`` of ``values`` in ``fmt``, or one number when they agree to 1e-3 (for prose)."""
    low, high = float(values.min()), float(values.max())
    return f"{low:{fmt}}" if abs(high - low) < 10 ** -3 else f"{low:{fmt}}–{high:{fmt}}"
