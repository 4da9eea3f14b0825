"""Stages ``probes/opencell_*`` (Table III and its companions, on the OpenCell images' split) and
``probes/hpa_cell_line`` (Cell-DINO's second task: the HPA-like images' cell line, with the same probes).

Every fold model is scored on train, validation and the untouched test images. A probe stage's inputs are the
dataset, the split and the embedding sets it trains on; it is recomputed when any of them or ``probe.*`` changes.

Beside Table III (``probes/opencell_<split>``, split by image or grouped by protein) stand:

- the **ceiling** (``probes/opencell_ceiling_<split>``): a small CNN trained with the labels on the raw images,
  same folds and scoring (:func:`~dinoxfer_lib.probes.ceiling.train_ceiling`, ``ceiling.*``);
- the **floor** (``probes/opencell_floor_<split>``): the paper's probe on the images embedded by the profile's
  architecture with random weights;
- the **grade >= 2 variant** (``probes/opencell_<split>_grade2``): Table III's MLP with only the grade 3 and 2
  labels counted (a label counts at any grade >= 1 everywhere else, as in the paper's 6,120 labelled images).

Chapter 02's trained-vs-random comparison is the floor beside ``probes/opencell_dino_trained_by_image`` (the MLP on
the DINO-trained OpenCell embeddings alone, the same models as Table III's row, so the chapters agree).

On the split grouped by protein the OpenCell row embeds with the backbone trained on that split's non-test images
(:func:`split_embeddings`), so no probe is tested on images its backbone trained on.
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
from dinoxfer_lib.embedding_sets import embedding_sets
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.pipeline.backbones import domain_channels, random_backbone, resolve_backbone
from dinoxfer_lib.pipeline.data import load_datasets, load_split, make_dataset, make_split
from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, cell_line_embeddings, table_iii_embeddings
from dinoxfer_lib.pipeline.run import Run
from dinoxfer_lib.probes.ceiling import FLOOR_SET
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.classifier import PAIRED_TARGETS
from dinoxfer_lib.store import Artifact

# probe.* settings that only the low-label stage depends on.
_LOW_LABEL_KEYS = ("low_label_fractions", "low_label_seeds", "low_label_folds")
# The paper's Table III sets: what the grouped split and the low-label curves retrain (the DINOv2 rows are compared in
# chapter 02, on the split by image and the cell-line task).
PAPER_SETS = tuple(paper.TABLE_III)
# Grades of the OpenCell annotation: 3 prominent, 2 less pronounced, 1 weak.
GRADES = (1, 2, 3)
# The Table III rows chapter 04's paired targets compare, but the floor (a stage of its own).
TARGET_SETS = tuple(dict.fromkeys(name for pair in PAIRED_TARGETS for name, _ in pair if name != FLOOR_SET))


def split_name(grouped: bool) -> str:
    """How stage names say which split: ``grouped`` (by protein) or ``by_image`` (the paper's)."""
    return "grouped" if grouped else "by_image"


def grade_labels(dataset: ImageSet, min_grade: int = 1) -> np.ndarray:
    """``(N, K)`` labels counting a class only where its grade is at least ``min_grade`` (1: every label, as
    ``dataset.labels``; sources without grades mark every label grade 3)."""
    if min_grade not in GRADES:
        raise ConfigError(f"min_grade = {min_grade!r}: expected one of {', '.join(map(str, GRADES))}")
    return dataset.labels if min_grade == 1 else np.asarray(dataset.grades) >= min_grade


def split_embeddings(run: Run, *, grouped: bool, names: tuple[str, ...] | None = None) -> dict[str, Artifact]:
    """The Table III embedding stages (all sets, or ``names``) whose probes use the split by image or grouped by
    protein: the OpenCell rows embed with the backbone trained on that split's non-test images.

    The pretraining domains never see an OpenCell image, so their backbones serve both splits. With published
    OpenCell weights or a checkpoint path (``embed.opencell_weights``) there is one backbone for both; what it
    trained on is then the user's to know.
    """
    sets = embedding_sets(run.config.dinov2.backbones, names)
    names = tuple(s.name for s in sets)
    opencell = tuple(s.name for s in sets if s.pretraining == "opencell")
    if not opencell or grouped == run.config.split.group_by_protein or run.config.embed.opencell_weights != "store":
        return table_iii_embeddings(run, names)
    features = table_iii_embeddings(run, tuple(n for n in names if n not in opencell))
    backbone = resolve_backbone(run, "opencell", grouped=grouped)
    features.update(table_iii_embeddings(run, opencell, backbones={"opencell": backbone},
                                         stage_suffix=f"_{split_name(grouped)}"))
    return {name: features[name] for name in names if name in features}


def load_probe_results(run: Run, *, grouped: bool = False, min_grade: int = 1) -> ProbeResult:
    """Table III and its companions: the paper's MLP and (split by image) the comparison probes on every set.

    By image, as the paper, or grouped by protein (the MLP on the paper's five sets, to compare with Table III; the
    OpenCell row with the grouped split's own backbone). ``min_grade`` 2 or 3 counts only labels of at least that
    grade (the MLP on the paper's five sets; the classes are kept, so a class without such labels scores 0).
    """
    from dinoxfer_lib.probes import run_probe_comparison

    probe = run.config.probe
    mlp_only = grouped or min_grade > 1

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        run_probe_comparison(
            features, grade_labels(dataset, min_grade), split=split, config=probe, class_names=dataset.class_names,
            probes=("mlp",) if mlp_only else ("mlp", *probe.compare), seed=run.config.seed,
            monitor_every=probe.monitor_every,
        ).save(folder)

    stage = f"probes/opencell_{split_name(grouped)}" + (f"_grade{min_grade}" if min_grade > 1 else "")
    recipe = {**_probe_recipe(probe), **({"min_grade": min_grade} if min_grade > 1 else {})}
    names = PAPER_SETS if grouped or min_grade > 1 else None
    artifact = _probe_stage(run, stage, split_embeddings(run, grouped=grouped, names=names), grouped=grouped,
                            config=recipe, fit=fit)
    return ProbeResult.load(artifact.path)


def random_init_embeddings(run: Run) -> Artifact:
    """Stage ``embeddings/opencell_native_random_init``: the OpenCell images through the profile's architecture
    with seeded random weights, natively (the floor, and chapter 02's baseline)."""
    name = "opencell_native"
    random = random_backbone(run.config, "opencell", channels=domain_channels(run, "opencell"))
    return table_iii_embeddings(run, (name,), backbones={"opencell": random}, stage_suffix="_random_init")[name]


def load_floor(run: Run, *, grouped: bool = False) -> ProbeResult:
    """The floor beside Table III: the paper's MLP on the random-weights embeddings (set
    :data:`~dinoxfer_lib.probes.ceiling.FLOOR_SET`).

    What the probe reaches from an architecture that learnt nothing: the share of Table III that pretraining adds
    is what lies above it.
    """
    return _mlp_stage(run, f"probes/opencell_floor_{split_name(grouped)}", {FLOOR_SET: random_init_embeddings(run)},
                      grouped=grouped)


def load_ceiling(run: Run, *, grouped: bool = False) -> ProbeResult:
    """The ceiling beside Table III: a small CNN trained with the labels on the raw OpenCell images (``ceiling.*``),
    on Table III's folds, resampling and decision rule (:func:`~dinoxfer_lib.probes.ceiling.train_ceiling`)."""
    from dinoxfer_lib.probes.ceiling import train_ceiling

    probe, ceiling = run.config.probe, run.config.ceiling

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        train_ceiling(dataset.images, dataset.labels, split=split, config=ceiling, class_names=dataset.class_names,
                      threshold=probe.threshold, tune_thresholds=probe.tune_thresholds,
                      seed=run.config.seed).save(folder)

    config = {"ceiling": dataclasses.asdict(ceiling), "threshold": probe.threshold,
              "tune_thresholds": probe.tune_thresholds}
    artifact = _probe_stage(run, f"probes/opencell_ceiling_{split_name(grouped)}", {}, grouped=grouped,
                            config=config, fit=fit)
    return ProbeResult.load(artifact.path)


def load_reference_rows(run: Run, *, grouped: bool = False) -> ProbeResult:
    """The ceiling and the floor as one result, to join Table III (``ProbeResult.concat``): same folds and test
    images, so every paired comparison with a Table III row is possible."""
    return ProbeResult.concat([load_ceiling(run, grouped=grouped), load_floor(run, grouped=grouped)])


def load_table_iii(run: Run, *, grouped: bool = False) -> ProbeResult:
    """Table III on one split with its ceiling and floor joined (:func:`load_probe_results` and
    :func:`load_reference_rows`): what chapter 04's table, targets and paired intervals read."""
    return ProbeResult.concat([load_probe_results(run, grouped=grouped), load_reference_rows(run, grouped=grouped)])


def load_trained_vs_random(run: Run) -> ProbeResult:
    """The OpenCell backbone as trained by DINO (set ``DINO-trained``) against the same architecture with random
    weights (the floor, :func:`load_floor`).

    Both embed the OpenCell images natively; the paper's probe (the profile's recipe) is trained on each with the
    split by image. A DINO run that does not beat its own random initialisation has learned nothing the probe can
    use. The probe's draws do not depend on a set's name, so the trained row equals Table III's ``opencell_native``
    row and the random row is the floor's own stage.
    """
    name = "opencell_native"
    trained = _mlp_stage(run, "probes/opencell_dino_trained_by_image",
                         {"DINO-trained": split_embeddings(run, grouped=False, names=(name,))[name]}, grouped=False)
    return ProbeResult.concat([trained, load_floor(run)])


def load_target_rows(run: Run, *, grouped: bool = False) -> ProbeResult:
    """The rows chapter 04's paired targets compare, alone: the MLP on :data:`TARGET_SETS` and the floor.

    What ``dinoxfer frontier`` measures at each DINO budget: the rows that move with the DINO epochs and enter a
    target, without the DINOv2 backbones, the replication rows and the ceiling. The probe's draws do not depend on
    which sets share a stage, so each row equals its Table III row.
    """
    rows = _mlp_stage(run, f"probes/opencell_target_rows_{split_name(grouped)}",
                      split_embeddings(run, grouped=grouped, names=TARGET_SETS), grouped=grouped)
    return ProbeResult.concat([rows, load_floor(run, grouped=grouped)])


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
    fresh hold-out + K folds of the HPA-like images (a seeded sample of ``dinov2.cell_line_images``) with
    ``split.*`` (stratified by line, grouped by antibody when ``split.group_by_protein``), stored as the stage's
    ``split.csv``.
    """
    from dinoxfer_lib.probes import run_probe_comparison

    probe, split_config = run.config.probe, run.config.split
    dataset_artifact = make_dataset(run, "hpa")
    features = cell_line_embeddings(run)

    def compute(folder: Path) -> None:
        dataset = load_imageset(dataset_artifact.path)
        matrices, image_ids = _embedded_images(features)
        dataset = dataset.subset(_positions(dataset, image_ids, source="hpa_embeddings"))
        lines, labels = cell_line_labels(dataset)
        groups = dataset.obs["group"].to_numpy() if split_config.group_by_protein else None
        split = splits.make_split(labels, groups=groups, test_fraction=split_config.test_fraction,
                                  n_folds=split_config.n_folds, seed=run.config.seed)
        split.to_frame(dataset.obs["image_id"]).to_csv(folder / "split.csv", index=False)
        run_probe_comparison(
            matrices, labels, split=split, config=probe, class_names=lines,
            probes=("mlp", *probe.compare), seed=run.config.seed, monitor_every=probe.monitor_every,
        ).save(folder)

    artifact = run.store.run_stage(
        "probes/hpa_cell_line", compute,
        config={"probe": _probe_recipe(probe), "split": dataclasses.asdict(split_config), "seed": run.config.seed,
                "images": run.config.dinov2.cell_line_images},
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


def _mlp_stage(run: Run, stage: str, features: Mapping[str, Artifact], *, grouped: bool) -> ProbeResult:
    """The paper's MLP probe (``probe.*``) on ``features`` as a probe stage of its own."""
    from dinoxfer_lib.probes import run_probe_suite

    def fit(folder: Path, features: dict, dataset: ImageSet, split: Split) -> None:
        run_probe_suite(features, dataset.labels, split=split, config=run.config.probe,
                        class_names=dataset.class_names, seed=run.config.seed).save(folder)

    artifact = _probe_stage(run, stage, features, grouped=grouped, config=_probe_recipe(run.config.probe), fit=fit)
    return ProbeResult.load(artifact.path)


def _embedding_matrices(artifacts: Mapping[str, Artifact]) -> dict[str, np.ndarray]:
    return _embedded_images(artifacts)[0]


def _embedded_images(artifacts: Mapping[str, Artifact]) -> tuple[dict[str, np.ndarray], pd.Index]:
    """Each set's embedding matrix and the image ids of its rows, which every set must share (the probes pair rows
    across sets)."""
    import anndata

    matrices, image_ids = {}, None
    for name, artifact in artifacts.items():
        embedded = anndata.read_h5ad(artifact.path / EMBEDDING_FILE)
        if image_ids is not None and not embedded.obs_names.equals(image_ids):
            raise DataError(f"{artifact.path / EMBEDDING_FILE}: holds other images than the first set's "
                            f"({embedded.n_obs} vs {len(image_ids)}): expected every set on the same images")
        matrices[name], image_ids = np.asarray(embedded.X), embedded.obs_names
    return matrices, image_ids


def _positions(dataset: ImageSet, image_ids: pd.Index, *, source: str) -> np.ndarray:
    """Where each of ``image_ids`` (from ``source``) sits in ``dataset``; an id it lacks is a DataError."""
    positions = pd.Index(dataset.obs["image_id"].astype(str)).get_indexer(image_ids)
    if (positions < 0).any():
        missing = image_ids[positions < 0][0]
        raise DataError(f"{source}: image {missing!r} is not among the {dataset.domain} images: the embeddings "
                        "are of another dataset (rerun with --force)")
    return positions


def _probe_recipe(probe) -> dict:
    """The ``probe.*`` values a probe stage depends on (the low-label settings only matter to their own stage)."""
    recipe = dataclasses.asdict(probe)
    for key in _LOW_LABEL_KEYS:
        recipe.pop(key)
    return recipe
