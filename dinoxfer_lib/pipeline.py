"""The book's stages as functions a notebook calls once each.

Each stage reads the config section it depends on, runs through the :class:`~dinoxfer_lib.store.ArtifactStore`
(reused when unchanged, recomputed with ``force``) and returns plain objects. Notebooks start with
:func:`open_run` and never hard-code a hyperparameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib.config import Config, load_config
from dinoxfer_lib.data.classes import (
    HPA_CHANNELS,
    HPA_CLASSES,
    NATURAL_CHANNELS,
    OPENCELL_CHANNELS,
    OPENCELL_CLASSES,
)
from dinoxfer_lib.data.dataset import ImageSet, load_imageset, save_imageset
from dinoxfer_lib.data.splits import Split, make_split
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.store import Artifact, ArtifactStore

DOMAINS = ("opencell", "hpa", "natural")
# What a table source of each domain must provide: its channels and, where fixed, its class vocabulary.
_TABLE_SCHEMA = {
    "opencell": (OPENCELL_CHANNELS, OPENCELL_CLASSES),
    "hpa": (HPA_CHANNELS, HPA_CLASSES),
    "natural": (NATURAL_CHANNELS, None),
}


@dataclass(frozen=True)
class Run:
    """A validated config and the store its stages write to."""

    config: Config
    store: ArtifactStore
    force: bool = False


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


def _dataset_artifact(run: Run, domain: str) -> Artifact:
    domain_config = getattr(run.config.data, domain)

    def compute(folder: Path) -> None:
        save_imageset(_make_dataset(domain, domain_config, seed=run.config.seed), folder)

    return run.store.run_stage(
        f"datasets/{domain}",
        compute,
        config={"domain": domain, **dataclasses.asdict(domain_config), "seed": run.config.seed},
        seed=run.config.seed,
        force=run.force,
    )


def _make_dataset(domain: str, domain_config, *, seed: int) -> ImageSet:
    source, path, size = domain_config.source, domain_config.path, domain_config.image_size
    if source == "synthetic":
        from dinoxfer_lib.data.synthetic import SYNTHETIC_DOMAINS

        return SYNTHETIC_DOMAINS[domain](domain_config, seed=seed)
    from dinoxfer_lib.data import readers

    if source == "opencell":
        # The paper uses the 6,120 labelled of OpenCell's 6,301 images.
        return readers.read_opencell(path, image_size=size, unlabelled="drop")
    if source == "hpa_kaggle":
        return readers.read_hpa_kaggle(path, image_size=size)
    channels, classes = _TABLE_SCHEMA[domain]
    return readers.read_table(path, channel_names=channels, class_names=classes, image_size=size, domain=domain)


def load_datasets(run: Run, domains: tuple[str, ...] = DOMAINS) -> dict[str, ImageSet]:
    """The profile's datasets (synthetic stand-ins or real data), generated or read once and then reused."""
    return {domain: load_imageset(_dataset_artifact(run, domain).path) for domain in domains}


def load_split(run: Run, domain: str = "opencell", *, grouped: bool | None = None) -> Split:
    """The hold-out + K-fold split of ``domain``, by image or grouped by protein (default: the config's choice)."""
    grouped = run.config.split.group_by_protein if grouped is None else grouped
    dataset = load_imageset(_dataset_artifact(run, domain).path)
    frame = pd.read_csv(_split_artifact(run, domain, grouped).path / "split.csv", dtype={"image_id": str})
    return Split.from_frame(frame, dataset.obs["image_id"], grouped=grouped, seed=run.config.seed)


def _split_artifact(run: Run, domain: str, grouped: bool) -> Artifact:
    dataset_artifact = _dataset_artifact(run, domain)
    split_config = run.config.split

    def compute(folder: Path) -> None:
        dataset = load_imageset(dataset_artifact.path)
        split = make_split(
            dataset.labels,
            groups=dataset.obs["group"].to_numpy() if grouped else None,
            test_fraction=split_config.test_fraction,
            n_folds=split_config.n_folds,
            seed=run.config.seed,
        )
        split.to_frame(dataset.obs["image_id"]).to_csv(folder / "split.csv", index=False)

    return run.store.run_stage(
        f"splits/{domain}_{'grouped' if grouped else 'by_image'}",
        compute,
        config={**dataclasses.asdict(split_config), "grouped": grouped, "seed": run.config.seed},
        inputs=[dataset_artifact],
        seed=run.config.seed,
        force=run.force,
    )


def load_backbones(run: Run, domains: tuple[str, ...] = DOMAINS):
    """The backbone pretrained on each domain, as ``embed.<domain>_weights`` asks (store, published, or path)."""
    from dinoxfer_lib.embedding_sets import resolve_backbone

    channels = {"opencell": OPENCELL_CHANNELS, "hpa": HPA_CHANNELS, "natural": NATURAL_CHANNELS}
    return {d: resolve_backbone(run.config, run.store, d, channels=channels[d]) for d in domains}


def load_embeddings(run: Run, names: tuple[str, ...] | None = None) -> dict:
    """Embeddings of the OpenCell-like images for each Table III set, as AnnData (computed once, then reused)."""
    import anndata

    return {name: anndata.read_h5ad(artifact.path / "embeddings.h5ad")
            for name, artifact in _embedding_artifacts(run, names).items()}


def _embedding_artifacts(run: Run, names: tuple[str, ...] | None, *, backbones: Mapping | None = None,
                         stage_suffix: str = "") -> dict[str, Artifact]:
    from dinoxfer_lib.embed import extract_embeddings
    from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
    from dinoxfer_lib.models.channels import make_encoder, single_channel_copy

    sets = [s for s in EMBEDDING_SETS if names is None or s.name in names]
    dataset_artifact = _dataset_artifact(run, "opencell")
    dataset = load_imageset(dataset_artifact.path)
    backbones = backbones or load_backbones(run, tuple(dict.fromkeys(s.pretraining for s in sets)))
    embed = run.config.embed
    out = {}
    for spec in sets:
        backbone = backbones[spec.pretraining]
        inputs = [dataset_artifact]
        if backbone.source.startswith("store: "):
            inputs.append(run.store.load(backbone.source.removeprefix("store: ")))

        def compute(folder: Path, spec=spec, backbone=backbone) -> None:
            model, slots = backbone.model, backbone.slots
            bag = spec.strategy == "bag_of_channels"
            if bag:  # the shared 1-channel encoder: patch filters summed over the backbone's input channels
                model, slots = single_channel_copy(model), ("any",)
            encoder = make_encoder(
                spec.strategy, model, target_channels=dataset.channel_names, slots=slots,
                slot_table=spec.slot_table, mean=None if bag else backbone.mean, std=None if bag else backbone.std,
                per_image_zscore=backbone.per_image_zscore, feature=embed.feature, reduce=embed.bag_reduce,
            )
            extract_embeddings(
                dataset, encoder, batch_size=embed.batch_size, img_size=embed.img_size, compile=embed.compile,
                out_path=folder / "embeddings.h5ad",
                description={"set": spec.name, "arch": embed.arch, "backbone": backbone.describe()},
            )

        out[spec.name] = run.store.run_stage(
            f"embeddings/{spec.name}{stage_suffix}",
            compute,
            config={"set": dataclasses.asdict(spec), "embed": dataclasses.asdict(embed), "backbone": backbone.describe()},
            inputs=inputs,
            seed=run.config.seed,
            force=run.force,
        )
    return out


def load_probe_results(run: Run, *, grouped: bool = False) -> ProbeResult:
    """Table III and its companions: the paper's MLP and (split by image) the comparison probes on every set.

    Every fold model is scored on train, validation and the untouched test images of the OpenCell-like split (by
    image, as the paper, or grouped by protein: the MLP only, to compare with Table III). Recomputed when an
    embedding set, the split or ``probe.*`` changes.
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
                            _embedding_artifacts(run, None), grouped=grouped, config=_probe_recipe(probe), fit=fit)
    return ProbeResult.load(artifact.path)


def load_trained_vs_random(run: Run) -> ProbeResult:
    """The OpenCell-like backbone as trained by DINO against the same architecture with random weights.

    Both embed the OpenCell-like images natively; the paper's probe (the profile's recipe) is trained on each with
    the split by image. A DINO run that does not beat its own random initialisation has learned nothing the probe
    can use.
    """
    from dinoxfer_lib.embedding_sets import random_backbone
    from dinoxfer_lib.probes import run_probe_suite

    name = "opencell_native"
    random = random_backbone(run.config, "opencell", channels=OPENCELL_CHANNELS)
    features = {
        "DINO-trained": _embedding_artifacts(run, (name,))[name],
        "random init": _embedding_artifacts(run, (name,), backbones={"opencell": random},
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

    artifact = _probe_stage(run, "probes/opencell_low_label", _embedding_artifacts(run, None), grouped=False,
                            config={**_probe_recipe(probe), **{k: getattr(probe, k) for k in _LOW_LABEL_KEYS}},
                            fit=fit)
    return pd.read_csv(artifact.path / "low_label.csv")


def _probe_stage(run: Run, stage: str, features: Mapping[str, Artifact], *, grouped: bool, config: dict,
                 fit) -> Artifact:
    """A probe stage on the OpenCell-like images: its inputs are the dataset, the split and the feature sets, and
    ``fit(folder, features, dataset, split)`` writes its files."""
    dataset_artifact = _dataset_artifact(run, "opencell")
    split_artifact = _split_artifact(run, "opencell", grouped)

    def compute(folder: Path) -> None:
        fit(folder, _embedding_matrices(features), load_imageset(dataset_artifact.path),
            load_split(run, "opencell", grouped=grouped))

    return run.store.run_stage(stage, compute, config=config,
                               inputs=[dataset_artifact, split_artifact, *features.values()],
                               seed=run.config.seed, force=run.force)


def _embedding_matrices(artifacts: Mapping[str, Artifact]) -> dict[str, np.ndarray]:
    import anndata

    return {name: np.asarray(anndata.read_h5ad(a.path / "embeddings.h5ad").X) for name, a in artifacts.items()}


_LOW_LABEL_KEYS = ("low_label_fractions", "low_label_seeds", "low_label_folds")


def _probe_recipe(probe) -> dict:
    """The ``probe.*`` values a probe stage depends on (the low-label settings only matter to their own stage)."""
    recipe = dataclasses.asdict(probe)
    for key in _LOW_LABEL_KEYS:
        recipe.pop(key)
    return recipe
