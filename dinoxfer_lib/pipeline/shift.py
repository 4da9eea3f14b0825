"""Stage ``transfer/matrix``: the cross-domain transfer matrix (every backbone x every labelled domain).

Its rows are the backbone pretrained on each domain and, when the profile trains it, DINO BoC (paper 003's
matrix is of BoC models). Its inputs are the domain embeddings
(:func:`~dinoxfer_lib.pipeline.embeddings.domain_embeddings`); the probe recipe is the profile's ``probe`` section
and the split follows ``split.*``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from dinoxfer_lib.pipeline.backbones import transfer_backbones
from dinoxfer_lib.pipeline.embeddings import domain_embeddings, read_embeddings
from dinoxfer_lib.pipeline.run import DOMAINS, Run

# Domains with localisation labels: the targets of the transfer matrix's probes.
LABELLED_DOMAINS = ("opencell", "hpa")


def shift_stages(run: Run | None = None) -> list[str]:
    """The stages of the domain-shift chapter: every domain through every backbone, the transfer matrix's extra
    rows (given the ``run``) and the matrix."""
    extra = transfer_backbones(run)[len(DOMAINS):] if run is not None else ()
    return [*(f"domain_embeddings/{b}/{d}" for b in DOMAINS for d in DOMAINS),
            *(f"domain_embeddings/{b}/{d}" for b in extra for d in LABELLED_DOMAINS), "transfer/matrix"]


def load_transfer_matrix(run: Run, *, device=None) -> pd.DataFrame:
    """The transfer matrix, computed once and then reused (see :func:`~dinoxfer_lib.tl.transfer.transfer_matrix`)."""
    from dinoxfer_lib.tl.transfer import transfer_matrix

    artifacts = {b: domain_embeddings(run, b, LABELLED_DOMAINS) for b in transfer_backbones(run)}

    def compute(folder: Path) -> None:
        embeddings = {b: read_embeddings(per) for b, per in artifacts.items()}
        table = transfer_matrix(embeddings, split_config=run.config.split, probe_config=run.config.probe,
                                seed=run.config.seed, device=device)
        table.to_csv(folder / "transfer.csv", index=False)

    artifact = run.store.run_stage(
        "transfer/matrix",
        compute,
        config={"probe": dataclasses.asdict(run.config.probe), "split": dataclasses.asdict(run.config.split),
                "seed": run.config.seed},
        inputs=[a for per in artifacts.values() for a in per.values()],
        seed=run.config.seed,
        force=run.force,
    )
    return pd.read_csv(artifact.path / "transfer.csv")
