"""A run: one validated config and the artifact store its stages write to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dinoxfer_lib.config import Config, load_config
from dinoxfer_lib.store import ArtifactStore

# The study's domains: the target (OpenCell) and the two pretraining domains (HPA, natural images).
DOMAINS = ("opencell", "hpa", "natural")


@dataclass(frozen=True)
class Run:
    """A validated config and the store its stages write to; ``force`` recomputes every stage it touches.

    ``source_digests`` keeps each real-data source's content digest for the run's lifetime, so the files behind a
    dataset are listed (and, when new, hashed) once per notebook rather than once per stage that reads them.
    """

    config: Config
    store: ArtifactStore
    force: bool = False
    source_digests: dict = field(default_factory=dict, compare=False, repr=False)


def open_run(
    profile: str = "demo",
    overrides: Mapping[str, Any] | None = None,
    *,
    runs_root: str | Path = "../runs",
    force: bool = False,
) -> Run:
    """What every notebook's first code cell calls with its papermill parameters."""
    config = load_config(profile, overrides)
    return Run(config=config, store=ArtifactStore(runs_root, config.profile), force=force)
