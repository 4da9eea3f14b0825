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
    dataset_artifact = _dataset_artifact(run, domain)
    dataset = load_imageset(dataset_artifact.path)
    split_config = run.config.split

    def compute(folder: Path) -> None:
        split = make_split(
            dataset.labels,
            groups=dataset.obs["group"].to_numpy() if grouped else None,
            test_fraction=split_config.test_fraction,
            n_folds=split_config.n_folds,
            seed=run.config.seed,
        )
        split.to_frame(dataset.obs["image_id"]).to_csv(folder / "split.csv", index=False)

    name = f"splits/{domain}_{'grouped' if grouped else 'by_image'}"
    artifact = run.store.run_stage(
        name,
        compute,
        config={**dataclasses.asdict(split_config), "grouped": grouped, "seed": run.config.seed},
        inputs=[dataset_artifact],
        seed=run.config.seed,
        force=run.force,
    )
    import pandas as pd

    frame = pd.read_csv(artifact.path / "split.csv", dtype={"image_id": str})
    return Split.from_frame(frame, dataset.obs["image_id"], grouped=grouped, seed=run.config.seed)


def load_backbones(run: Run, domains: tuple[str, ...] = DOMAINS):
    """The backbone pretrained on each domain, as ``embed.<domain>_weights`` asks (store, published, or path)."""
    from dinoxfer_lib.embedding_sets import resolve_backbone

    channels = {"opencell": OPENCELL_CHANNELS, "hpa": HPA_CHANNELS, "natural": NATURAL_CHANNELS}
    return {d: resolve_backbone(run.config, run.store, d, channels=channels[d]) for d in domains}


def load_embeddings(run: Run, names: tuple[str, ...] | None = None) -> dict:
    """Embeddings of the OpenCell-like images for each Table III set, as AnnData (computed once, then reused)."""
    import anndata

    from dinoxfer_lib.embed import extract_embeddings
    from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
    from dinoxfer_lib.models.channels import make_encoder, single_channel_copy

    sets = [s for s in EMBEDDING_SETS if names is None or s.name in names]
    dataset_artifact = _dataset_artifact(run, "opencell")
    dataset = load_imageset(dataset_artifact.path)
    backbones = load_backbones(run, tuple(dict.fromkeys(s.pretraining for s in sets)))
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
                dataset, encoder, batch_size=embed.batch_size, img_size=embed.img_size,
                out_path=folder / "embeddings.h5ad",
                description={"set": spec.name, "arch": embed.arch, "backbone": backbone.describe()},
            )

        artifact = run.store.run_stage(
            f"embeddings/{spec.name}",
            compute,
            config={"set": dataclasses.asdict(spec), "embed": dataclasses.asdict(embed), "backbone": backbone.describe()},
            inputs=inputs,
            seed=run.config.seed,
            force=run.force,
        )
        out[spec.name] = anndata.read_h5ad(artifact.path / "embeddings.h5ad")
    return out
