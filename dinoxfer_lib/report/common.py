"""What every chapter shows about its own run: the data banner, provenance, a config beside the paper's, and how
the book prints a table.

Chapters must say plainly when their numbers come from synthetic data, and which run produced them; these helpers
write that text from the objects themselves so no notebook hard-codes it.

Tables: :func:`use_book_style` makes every DataFrame a chapter shows print as :func:`tidy_table` writes it (three
significant digits, F1 as ``0.823 ± 0.006``, integers as integers, booleans as ✓/✗, no index that only counts
rows, headers that can wrap), in a box that scrolls if it must, and a table of more than :data:`MAX_ROWS` rows as a
summary with the full table behind a toggle (an HTML ``<details>``: it renders offline in JupyterLab and in the
Jupyter Book alike). A report function chooses a table's summary with :func:`summarise`.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import numbers
from dataclasses import dataclass
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.provenance import commit_label
from dinoxfer_lib.store import ArtifactStore


def describe_data(dataset) -> str:
    """Where one dataset of this run came from and how many images it holds, in one phrase from the data (an
    :class:`~dinoxfer_lib.data.dataset.ImageSet`, or an EM set of chapter 08)."""
    if not hasattr(dataset, "extra"):  # an EMSet: its metadata says what it is
        meta = dataset.metadata
        name = {"lucchi": "Lucchi++", "vnc": "VNC"}.get(dataset.domain, dataset.domain)
        if dataset.synthetic:
            return f"{len(dataset):,} synthetic {name} stand-in patches ({meta.get('source', 'generated')})"
        return f"{len(dataset):,} {name} patches read from {meta.get('source', '?')}"
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
        commit = commit_label(git, digits=10)
        rows.append(
            {
                "stage": stage,
                "computed": _minute(record.get("created")),
                "wall time (s)": record.get("wall_time_s"),
                "device": record.get("device"),
                "commit": commit,
                "config hash": record.get("config_hash", "")[:12],
            }
        )
    return pd.DataFrame(rows).set_index("stage")


def _minute(timestamp: str | None) -> str | None:
    """An ISO timestamp to the minute, as a reader needs it (``2026-12-01 22:57 UTC``)."""
    if not timestamp:
        return timestamp
    moment = pd.Timestamp(timestamp)
    zone = " UTC" if moment.tzinfo is not None and moment.utcoffset() == pd.Timedelta(0) else ""
    return moment.strftime("%Y-%m-%d %H:%M") + zone


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
    table = pd.DataFrame(rows).set_index("setting")
    differs = list(table.index[table["differs"] == "yes"])
    return summarise(table, differs, what="the settings that differ from the paper") if differs else table


def _show(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def value_range(values: pd.Series, fmt: str = ".2f") -> str:
    """``low–high`` of ``values`` in ``fmt``, or one number when they agree to 1e-3 (for prose)."""
    low, high = float(values.min()), float(values.max())
    return f"{low:{fmt}}" if abs(high - low) < 10 ** -3 else f"{low:{fmt}}–{high:{fmt}}"


# ---------------------------------------------------------------------------------------------------------------------
# How the book prints tables

# A table longer than this is summarised on the page, with the full table behind a toggle.
MAX_ROWS = 15
# The summary of a long table without a summary of its own: its first rows.
SUMMARY_ROWS = 10
# Where a report function leaves a long table's summary (the labels of the rows to show, and what they are).
SUMMARY_ATTR = "dinoxfer_summary"
MISSING = "—"
# Separator of a mean and its spread.
PLUS_MINUS = " ± "


def summarise(frame: pd.DataFrame, rows: Sequence, *, what: str) -> pd.DataFrame:
    """Mark the rows (index labels) ``frame`` shows when it is too long to print whole, and say what they are.

    ``what`` completes "Showing ..." (e.g. ``"the settings that differ from the paper"``). The frame is returned
    unchanged otherwise; a table of :data:`MAX_ROWS` rows or fewer prints whole regardless.
    """
    frame.attrs[SUMMARY_ATTR] = {"rows": list(rows), "what": what}
    return frame


def format_number(value: float, *, decimals: int | None = None) -> str:
    """One number as the book prints it: ``decimals`` places if given, else three significant digits; integral
    values of 10,000 or more with thousands separators; NaN as "—"."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):  # NaN, None, pd.NA, NaT
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "✓" if value else "✗"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    return f"{value:,.{_decimals(value)}f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"


def _decimals(value: float, digits: int = 3) -> int:
    """Decimal places that show ``value`` to ``digits`` significant digits (none for 1,000 and above)."""
    if value == 0:
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def _mean_std_pairs(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Shown name → (mean column, std column), for ``x_mean``/``x_std`` (shown ``x_mean ± std``), ``mean``/``std``
    and ``x``/``x_std`` (shown ``x ± std``)."""
    pairs = {}
    names = [str(c) for c in columns]
    for name in names:
        if "std" in name:
            continue
        if "mean" in name and name.replace("mean", "std", 1) in names:
            pairs[name.replace("mean", "mean ± std", 1)] = (name, name.replace("mean", "std", 1))
        elif f"{name}_std" in names:
            pairs[f"{name} ± std"] = (name, f"{name}_std")
    return pairs


def _format_column(values: pd.Series) -> pd.Series:
    """Every value of one column as text, with one rule for the column where the values share a kind."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: "✓" if v else "✗")
    if pd.api.types.is_integer_dtype(values):
        return values.map(format_number)
    if pd.api.types.is_float_dtype(values):
        finite = values[np.isfinite(values)]
        if len(finite) and (finite == finite.round()).all() and (finite.abs() > 1).any():
            return values.map(lambda v: format_number(int(v)) if np.isfinite(v) else format_number(v))
        if len(finite) and (finite.abs() <= 1).all():  # scores and fractions: one precision, 0.823
            return values.map(lambda v: format_number(v, decimals=3))
        return values.map(format_number)
    return values.map(_format_cell)


def _format_cell(value) -> str:
    """A value of a column of mixed kinds: numbers as :func:`format_number` (integral floats as integers)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return format_number(value)
    if isinstance(value, numbers.Real):
        if isinstance(value, float) and math.isfinite(value) and value == round(value) and abs(value) > 1:
            return format_number(int(value))
        return format_number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_format_cell, value))
    return str(value)


def _mean_std(mean: pd.Series, std: pd.Series) -> pd.Series:
    """``mean ± std``, both to the decimals that give the mean three significant digits (0.823 ± 0.006)."""
    finite = mean[np.isfinite(mean.astype(float))].abs()
    scores = len(finite) and (finite <= 1).all()

    def one(m, s) -> str:
        if m is None or not np.isfinite(float(m)):
            return MISSING
        decimals = 3 if scores else _decimals(float(m))
        if s is None or not np.isfinite(float(s)):
            return format_number(float(m), decimals=decimals)
        return format_number(float(m), decimals=decimals) + PLUS_MINUS + format_number(float(s), decimals=decimals)

    return pd.Series([one(m, s) for m, s in zip(mean, std)], index=mean.index)


def _readable(name) -> str:
    """A header a reader can wrap: ``test_f1_mean`` → ``test f1 mean``."""
    return " ".join(map(str, name)).strip() if isinstance(name, tuple) else str(name).replace("_", " ")


def tidy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as text, ready to print (see the module docstring); the index becomes the first column(s).

    An unnamed 0..n-1 index (it only counts rows) is dropped; in a multi-level index a value is printed only where
    it changes. Columns that hold a mean and its std are printed as one ``mean ± std`` column.
    """
    frame = frame.copy()
    counting = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None and frame.index.start == 0
    if not counting:
        names = [name if name is not None else f"__level{k}" for k, name in enumerate(frame.index.names)]
        frame.index = frame.index.set_names(names)
        frame = frame.reset_index()
        for k in range(len(names) - 1):  # an outer level's label printed once, where its group starts
            keys = frame[names[: k + 1]]
            repeated = keys.eq(keys.shift()).all(axis=1)
            frame[names[k]] = frame[names[k]].astype(object).where(~repeated, "")
        frame = frame.rename(columns={n: "" for n in names if str(n).startswith("__level")})
    frame = frame.reset_index(drop=True)
    pairs = _mean_std_pairs(list(frame.columns))
    shown = {}
    merged = {column for pair in pairs.values() for column in pair}
    for column in frame.columns:
        name = str(column)
        if name in merged:
            for label, (mean, std) in pairs.items():
                if name == mean:
                    shown[_readable(label)] = _mean_std(frame[mean], frame[std])
            continue
        shown[_readable(column)] = _format_column(frame[column])
    return pd.DataFrame(shown)


def table_html(frame: pd.DataFrame, *, max_rows: int = MAX_ROWS) -> str:
    """``frame`` as the book prints it (HTML): tidied, in a box that scrolls sideways if it must, and when longer
    than ``max_rows`` its summary (:func:`summarise`, else its first rows) above the full table in a toggle."""
    full = _html(tidy_table(frame))
    if len(frame) <= max_rows:
        return full
    marked = frame.attrs.get(SUMMARY_ATTR) or {}
    if marked.get("rows"):
        summary, what = frame.loc[[r for r in marked["rows"] if r in frame.index]], marked["what"]
    else:
        summary, what = frame.iloc[:SUMMARY_ROWS], f"the first {SUMMARY_ROWS} rows"
    lead = f"<p>Showing {html.escape(what)} ({len(summary)} of {len(frame)} rows).</p>"
    return lead + (_html(tidy_table(summary)) if len(summary) else "") + toggle_html(f"All {len(frame)} rows", full)


def _html(tidy: pd.DataFrame) -> str:
    table = tidy.to_html(index=False, escape=True, border=0, classes="dinoxfer-table")
    return f'<div class="dinoxfer-table-box" style="overflow-x: auto; max-width: 100%">{table}</div>'


def toggle_html(summary: str, body_html: str) -> str:
    """A closed toggle (HTML ``<details>``) titled ``summary`` that opens on ``body_html``."""
    return (f'<details class="dinoxfer-toggle"><summary>{html.escape(summary)}</summary>'
            f"{body_html}</details>")


@dataclass(frozen=True)
class Toggle:
    """A figure or a table behind a closed toggle titled ``summary``, for a cell to show: the rest of a long output,
    one click away. A figure is inlined as PNG, so the page needs no other file."""

    summary: str
    content: object  # a matplotlib Figure, a DataFrame, or anything with an HTML representation

    def _repr_html_(self) -> str:
        from matplotlib.figure import Figure

        if isinstance(self.content, Figure):
            buffer = io.BytesIO()
            self.content.savefig(buffer, format="png", bbox_inches="tight")
            data = base64.b64encode(buffer.getvalue()).decode()
            body = f'<img src="data:image/png;base64,{data}" alt="{html.escape(self.summary)}" style="max-width: 100%">'
        elif isinstance(self.content, pd.DataFrame):
            body = table_html(self.content)
        else:
            body = self.content._repr_html_()
        return toggle_html(self.summary, body)


def use_book_style() -> None:
    """Draw every figure in the book's style (:func:`dinoxfer_lib.pl.style.use_book_style`) and, in IPython, print
    every DataFrame a cell shows as :func:`table_html` does. Called in each chapter's setup cell."""
    from IPython import get_ipython

    from dinoxfer_lib.pl.style import use_book_style as use_figure_style

    use_figure_style()
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)
