"""Stages ``probes/opencell_*`` (Table III and its companions, on the OpenCell images' split) and
``probes/hpa_cell_line`` (Cell-DINO's second task: the HPA-like images' cell line, with the same probes).

Every fold model is scored on train, validation and the untouched test images. A probe stage's inputs are the
dataset, the split and the embedding sets it trains on; it is recomputed when any of them or ``probe.*`` changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.data import splits
from dinoxfer_lib.data.dataset import ImageSet, load_imageset
from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pipeline.backbones import domain_channels, random_backbone
from dinoxfer_lib.pipeline.data import load_datasets, load_split, make_dataset, make_split
from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, cell_line_embeddings, table_iii_embeddings
from dinoxfer_lib.pipeline.run import Run
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.store import Artifact

# probe.* settings that only the low-label stage depends on.
_LOW_LABEL_KEYS = ("low_label_fractions", "low_label_seeds", "low_label_folds")
# The paper's Table III sets: what the grouped split and the low-label curves retrain (the DINOv2 rows are compared in
# chapter 02, on the split by image and the cell-line task).
PAPER_SETS = tuple(paper.TABLE_III)


def load_probe_results(run: Run, *, grouped: bool = False) -> ProbeResult:
    """Table III and its companions: the paper's MLP and (split by image) the comparison probes on every set.

    By image, as the paper, or grouped by protein (the MLP on the paper's five sets, to compare with Table III).
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
                            table_iii_embeddings(run, PAPER_SETS if grouped else None), grouped=grouped,
                            config=_probe_recipe(probe), fit=fit)
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
    """Cell-DINO's low-annotation curves: test macro F1 of the MLP probe on stratified fractions of the labels, for
    the paper's five sets."""
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

    artifact = _probe_stage(run, "probes/opencell_low_label", table_iii_embeddings(run, PAPER_SETS), grouped=False,
                            config={**_probe_recipe(probe), **{k: getattr(probe, k) for k in _LOW_LABEL_KEYS}},
                            fit=fit)
    return pd.read_csv(artifact.path / "low_label.csv")


def has_cell_lines(run: Run) -> bool:
    """Whether the HPA-like images name their cell line (``obs["cell_line"]``, two or more): the synthetic stand-in
    does, the HPA Kaggle images do not."""
    obs = load_datasets(run, ("hpa",))["hpa"].obs
    return "cell_line" in obs and obs["cell_line"].nunique() >= 2


def cell_line_labels(dataset: ImageSet) -> tuple[tuple[str, ...], np.ndarray]:
    """The cell lines (sorted) and each image's line as a one-hot ``(N, lines)`` bool matrix."""
    if "cell_line" not in dataset.obs:
        raise DataError(f"the {dataset.domain} images carry no cell line (obs column 'cell_line'): the cell-line "
                        "task needs one (the synthetic stand-in has it; a table source can add the column)")
    lines = dataset.obs["cell_line"].astype(str).to_numpy()
    names = tuple(sorted(set(lines)))
    if len(names) < 2:
        raise DataError(f"the {dataset.domain} images name {len(names)} cell line ({', '.join(names)}): the "
                        "cell-line task needs two or more")
    return names, lines[:, None] == np.asarray(names)[None, :]


def load_cell_line_results(run: Run) -> ProbeResult:
    """Cell-DINO's cell-line task: the paper's MLP and the comparison probes predict each HPA-like image's cell line
    from the embeddings of :data:`~dinoxfer_lib.embedding_sets.CELL_LINE_SETS`.

    The lines are one-hot labels for the same multilabel probes, scored by macro F1 over the lines; the split is a
    fresh hold-out + K folds of the HPA-like images with ``split.*`` (stratified by line, grouped by antibody when
    ``split.group_by_protein``), stored as the stage's ``split.csv``.
    """
    from dinoxfer_lib.probes import run_probe_comparison

    probe, split_config = run.config.probe, run.config.split
    dataset_artifact = make_dataset(run, "hpa")
    features = cell_line_embeddings(run)

    def compute(folder: Path) -> None:
        dataset = load_imageset(dataset_artifact.path)
        lines, labels = cell_line_labels(dataset)
        groups = dataset.obs["group"].to_numpy() if split_config.group_by_protein else None
        split = splits.make_split(labels, groups=groups, test_fraction=split_config.test_fraction,
                                  n_folds=split_config.n_folds, seed=run.config.seed)
        split.to_frame(dataset.obs["image_id"]).to_csv(folder / "split.csv", index=False)
        run_probe_comparison(
            _embedding_matrices(features), labels, split=split, config=probe, class_names=lines,
            probes=("mlp", *probe.compare), seed=run.config.seed, monitor_every=probe.monitor_every,
        ).save(folder)

    artifact = run.store.run_stage(
        "probes/hpa_cell_line", compute,
        config={"probe": _probe_recipe(probe), "split": dataclasses.asdict(split_config), "seed": run.config.seed},
        inputs=[dataset_artifact, *features.values()], seed=run.config.seed, force=run.force,
    )
    return ProbeResult.load(artifact.path)


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
