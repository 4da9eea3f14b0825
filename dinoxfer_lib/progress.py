"""Progress bars for a person watching a terminal or JupyterLab, and never on a rendered page of the book.

A tqdm bar in a notebook writes its every redraw to the cell's stderr; executed by papermill, each redraw is kept in
the notebook and the book renders them as hundreds of stderr blocks. So :func:`dinoxfer_lib.runner.run_notebooks`
starts its kernels with tqdm's own switch, ``TQDM_DISABLE=1``, in their environment: a bar made here then draws
nothing and, where the caller asks for it, prints one summary line as it closes. In a terminal the bar shows when
stderr is a terminal (tqdm's default); in a JupyterLab kernel, whose stderr is never a terminal, it shows always.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

# tqdm's own variable (it reads TQDM_<ARGUMENT> as a default): set, bars are off, as in a book build.
DISABLE_VARIABLE = "TQDM_DISABLE"


def bars_disabled() -> bool:
    """Whether bars are switched off in this process (``TQDM_DISABLE`` set to anything but ``""``/``0``/false)."""
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _in_kernel() -> bool:
    """Whether stderr is a Jupyter kernel's stream (not a terminal, yet a person may be watching)."""
    return type(sys.stderr).__module__.startswith("ipykernel")


class ProgressBar(tqdm):
    """A tqdm bar that is off where :func:`bars_disabled`, and then (with ``summary``) prints one line on close."""

    def __init__(self, iterable: Iterable | None = None, *, summary: bool = False, enabled: bool = True, **kwargs):
        self._summary_due = summary and enabled and bars_disabled()
        self._opened = time.perf_counter()
        self._counted = 0  # a disabled tqdm counts nothing and keeps no desc: the summary line needs both
        self._what = (kwargs.get("desc") or "done", kwargs.get("unit", "it"))
        if not enabled or bars_disabled():
            disable = True
        else:
            disable = False if _in_kernel() else None  # None: tqdm draws only on a terminal
        super().__init__(iterable, disable=disable, **kwargs)

    def update(self, n: float | None = 1):
        self._counted += 1 if n is None else n
        return super().update(n)

    def close(self) -> None:
        if self._summary_due:
            self._summary_due = False
            desc, unit = self._what
            print(f"{desc}: {int(self._counted):,} {unit}{'' if self._counted == 1 else 's'} "
                  f"in {time.perf_counter() - self._opened:.1f} s")
        super().close()


def progress_bar(iterable: Iterable | None = None, *, desc: str, unit: str = "it", total: int | None = None,
                 enabled: bool = True, summary: bool = False) -> ProgressBar:
    """A transient progress bar over ``iterable`` (or ``total`` steps, advanced with ``update``).

    Parameters
    ----------
    desc, unit, total
        As tqdm's.
    enabled
        False: no bar at all (a caller's own switch, e.g. ranks other than 0 of a torchrun job).
    summary
        Where bars are off (a book build), print ``"<desc>: <n> <unit>s in <t> s"`` once the bar is closed: the
        one line a rendered page shows instead of the bar. Only a bar closed explicitly prints it.
    """
    return ProgressBar(iterable, desc=desc, unit=unit, total=total, enabled=enabled, summary=summary, leave=False)
