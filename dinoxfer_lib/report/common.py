"""What every chapter shows about its own run: the data banner, provenance, and a config beside the paper's.

Chapters must say plainly when their numbers come from synthetic data, and which run produced them; these helpers
write that text from the objects themselves so no notebook hard-codes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Collection, Iterable, Mapping

import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.store import ArtifactStore


def describe_data(dataset: ImageSet) -> str:
    """Where one dataset of this run came from and how many images it holds, in one phrase from the data."""
    source = dataset.extra.get("source", {})
    name = {"opencell": "OpenCell", "hpa": "HPA", "natural": "natural"}.get(dataset.domain, dataset.domain)
    if dataset.synthetic:
        text = f"{len(dataset):,} synthetic {name} stand-in images (generated, seed {source.get('seed', '?')})"
    else:
        layout = {"opencell": "OpenCell layout", "hpa_kaggle": "HPA Kaggle layout", "table": "a table"}.get(
            source.get("kind"), "real data")
        text = f"{len(dataset):,} {name} images read from {source.get('path', '?')} ({layout})"
    dropped = dataset.extra.get("unlabelled_dropped", 0)
    if dropped:
        text += f"; {dropped:,} unlabelled row(s) dropped"
    return text


def data_banner(datasets: Mapping[str, ImageSet], *, profile: str) -> str:
    """A MyST admonition naming the profile and, per domain, the data this page's numbers come from; a warning
    when any of them are the synthetic stand-ins."""
    lines = [f"- {describe_data(d)}" for d in datasets.values()]
    if any(d.synthetic for d in datasets.values()):
        return "\n".join([
            ":::{warning}",
            f"**Synthetic data.** Profile `{profile}`; this page's numbers come from:",
            "", *lines, "",
            "The synthetic stand-ins test the pipeline; their numbers are **not comparable with the paper's**. To run "
            "on real data, see *Your own data* and *Running on real data and a GPU*.",
            ":::",
        ])
    return "\n".join([":::{note}", f"Profile `{profile}`; this page's numbers come from:", "", *lines, ":::"])


@dataclass(frozen=True)
class Skipped:
    """A part of a chapter this run cannot show on its data: one sentence saying what was skipped and why, shown
    where the part would have been (a chapter never stops the book for a field the data lack)."""

    what: str
    why: str

    def _repr_markdown_(self) -> str:
        return f":::{{note}}\n**Skipped: {self.what}.** {self.why}\n:::"


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
