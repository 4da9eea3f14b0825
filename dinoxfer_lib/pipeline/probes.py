"""Stages ``probes/opencell_*``: Table III and its companions, on the OpenCell images' split.

Every fold model is scored on train, validation and the untouched test images. A probe stage's inputs are the
dataset, the split and the embedding sets it trains on; it is recomputed when any of them or ``probe.*`` changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet, load_imageset
from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.pipeline.backbones import domain_channels, random_backbone
from dinoxfer_lib.pipeline.data import load_split, make_dataset, make_split
from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, table_iii_embeddings
from dinoxfer_lib.pipeline.run import Run
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.store import Artifact

# probe.* settings that only the low-label stage depends on.
_LOW_LABEL_KEYS = ("low_label_fractions", "low_label_seeds", "low_label_folds")


def load_probe_results(run: Run, *, grouped: bool = False) -> ProbeResult:
    """Table III and its companions: the paper's MLP and (split by image) the comparison probes on every set.

    By image, as the paper, or grouped by protein (the MLP only, to compare with Table III).
    """
    from dinoxfer_lib.probes import run_probe_comparison

    probe = run.config.probe

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        run_probe_comparison(
            features, dataset.labels, split=split, config=probe, class_names=dataset.class_names,
            probes=("mlp",) if grouped else ("mlp", *probe.compare), seed=run.config.seed,
            monitor_every=probe.monitor_every,
        ).save(folder)

    artifact = _probe_stage(run, f"probes/opencell_{'grouped' if grouped else 'by_image'}",
                            table_iii_embeddings(run), grouped=grouped, config=_probe_recipe(probe), fit=fit)
    return ProbeResult.load(artifact.path)


def load_trained_vs_random(run: Run) -> ProbeResult:
    """The OpenCell backbone as trained by DINO against the same architecture with random weights.

    Both embed the OpenCell images natively; the paper's probe (the profile's recipe) is trained on each with the
    split by image. A DINO run that does not beat its own random initialisation has learned nothing the probe can
    use.
    """
    from dinoxfer_lib.probes import run_probe_suite

    name = "opencell_native"
    random = random_backbone(run.config, "opencell", channels=domain_channels(run, "opencell"))
    features = {
        "DINO-trained": table_iii_embeddings(run, (name,))[name],
        "random init": table_iii_embeddings(run, (name,), backbones={"opencell": random},
                                            stage_suffix="_random_init")[name],
    }

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        run_probe_suite(features, dataset.labels, split=split, config=run.config.probe,
                        class_names=dataset.class_names, seed=run.config.seed).save(folder)

    artifact = _probe_stage(run, "probes/opencell_trained_vs_random", features, grouped=False,
                            config=_probe_recipe(run.config.probe), fit=fit)
    return ProbeResult.load(artifact.path)


def load_low_label_curves(run: Run) -> pd.DataFrame:
    """Cell-DINO's low-annotation curves: test macro F1 of the MLP probe on stratified fractions of the labels."""
    from dinoxfer_lib.probes import low_label_curve

    probe = run.config.probe

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        curves = [
            low_label_curve(X, dataset.labels, split=split, config=probe, fractions=probe.low_label_fractions,
                            seeds=range(probe.low_label_seeds), folds=probe.low_label_folds,
                            name=name).assign(set=name)
            for name, X in features.items()
        ]
        pd.concat(curves, ignore_index=True).to_csv(folder / "low_label.csv", index=False)

    artifact = _probe_stage(run, "probes/opencell_low_label", table_iii_embeddings(run), grouped=False,
                            config={**_probe_recipe(probe), **{k: getattr(probe, k) for k in _LOW_LABEL_KEYS}},
                            fit=fit)
    return pd.read_csv(artifact.path / "low_label.csv")


def _probe_stage(run: Run, stage: str, features: Mapping[str, Artifact], *, grouped: bool, config: dict,
                 fit: Callable[[Path, dict, ImageSet, Split], None]) -> Artifact:
    """A probe stage on the OpenCell images: ``fit(folder, features, dataset, split)`` writes its files."""
    dataset_artifact = make_dataset(run, "opencell")
    split_artifact = make_split(run, "opencell", grouped=grouped)

    def compute(folder: Path) -> None:
        fit(folder, _embedding_matrices(features), load_imageset(dataset_artifact.path),
            load_split(run, "opencell", grouped=grouped))

    return run.store.run_stage(stage, compute, config=config,
                               inputs=[dataset_artifact, split_artifact, *features.values()],
                               seed=run.config.seed, force=run.force)


def _embedding_matrices(artifacts: Mapping[str, Artifact]) -> dict[str, np.ndarray]:
    import anndata

    return {name: np.asarray(anndata.read_h5ad(a.path / EMBEDDING_FILE).X) for name, a in artifacts.items()}


def _probe_recipe(probe) -> dict:
    """The ``probe.*`` values a probe stage depends on (the low-label settings only matter to their own stage)."""
    recipe = dataclasses.asdict(probe)
    for key in _LOW_LABEL_KEYS:
        recipe.pop(key)
    return recipe
